#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: source_build
short_description: Build and install a component from source, once per set of inputs
version_added: 0.2.0
description:
  - Fetches the source of a component (a git URL and ref, a tarball URL, or a Debian source package with
    C(apt-get source)) into a fresh tree under O(work_dir), applies O(patches) with C(patch -p1), runs
    O(configure_command) with O(configure_flags), O(build_command) and O(install_command).
  - Everything but the install runs as the unprivileged O(build_user) (a system user, created when missing)
    when the module runs as root; the install runs as root. Not as root, every step runs as the connecting user.
  - A build stamp (JSON) records the sha256 of every input - the source (URL and ref, tarball checksum, or
    package, version and deb-src lines), the content of each patch, the commands and flags, the prefix and
    O(build_env). A run with the same inputs does nothing (V(changed=false)) while the stamp is there and
    every O(creates) path exists; check mode says whether a build would run and why (no stamp, which inputs
    changed, files missing).
  - The commands run with a clean environment - E(PATH), E(LANG), E(HOME) (the component's work dir), E(PREFIX),
    E(JOBS) (the number of CPUs), E(SRC_DIR), E(WORK_DIR), E(COMPONENT) - plus O(build_env); the commands are
    shell lines (C(/bin/sh -ec)) so they can use these variables.
  - Progress goes to O(log_file); its path is returned, and its last lines when a step fails.
author:
  - colo.ft maintainers (@colo-ft)
extends_documentation_fragment:
  - colo.ft.colo.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  component:
    description: Name of the component (e.g. V(qemu), V(iptables)); names its work dir, log and stamp.
    type: str
    required: true
  git:
    description: URL (or local path) of a git repository. Needs O(ref). One of O(git), O(tarball), O(apt_package).
    type: str
  ref:
    description:
      - Tag, branch or commit of O(git). A branch is recorded by name, so a moved branch does not trigger a
        rebuild; pin a tag or a commit for a reproducible build (the commit built is returned as RV(resolved)).
    type: str
  git_depth:
    description: History depth to fetch (V(0) fetches everything; some servers refuse to fetch a commit shallowly).
    type: int
    default: 1
  tarball:
    description: URL of a source tarball (C(http), C(https) or C(file)); unpacked with its first directory stripped.
    type: str
  tarball_sha256:
    description: Expected sha256 of O(tarball); the build fails on a mismatch.
    type: str
  apt_package:
    description: Debian source (or binary) package to fetch with C(apt-get source).
    type: str
  apt_version:
    description: Version of O(apt_package) (C(apt-get source pkg=version)); empty for the candidate version.
    type: str
    default: ''
  apt_sources:
    description:
      - C(deb-src) lines for a private apt configuration kept in the work dir (its own source list and package
        lists, passed with C(-o Dir::Etc::SourceList) and friends), so the host's apt configuration is not changed.
      - Empty uses the host's apt sources, which must then have C(deb-src) entries.
    type: list
    elements: str
    default: []
  patches:
    description: Patch files on the managed host, applied in this order with C(patch -p1) at the top of the tree.
    type: list
    elements: path
    default: []
  configure_command:
    description: Shell line run first in the tree (O(subdir)); empty skips it.
    type: str
    default: ./configure --prefix="$PREFIX"
  configure_flags:
    description: Arguments appended (shell-quoted) to O(configure_command).
    type: list
    elements: str
    default: []
  build_command:
    description: Shell line that builds.
    type: str
    default: make -j"$JOBS"
  install_command:
    description: Shell line that installs, run as root; empty skips it.
    type: str
    default: make install
  prefix:
    description: Installation prefix (E(PREFIX) of the commands); the stamp lives under it unless O(stamp_dir) is set.
    type: path
    default: /usr/local
  subdir:
    description: Directory of the tree, relative to its top, where the configure, build and install commands run.
    type: str
    default: ''
  build_env:
    description: Extra environment variables of the commands (part of the stamp).
    type: dict
    default: {}
  build_user:
    description: Unprivileged user that fetches and builds when the module runs as root (V(root) builds as root).
    type: str
    default: colo-build
  work_dir:
    description: Directory holding one work dir per component (source tree, downloads, patches, apt lists) and the logs.
    type: path
    default: /var/tmp/colo-ft-build
  stamp_dir:
    description: Directory of the build stamps; default C(share/colo-ft/builds) under O(prefix).
    type: path
  log_file:
    description: Log of the build; default O(work_dir)/O(component).log.
    type: path
  creates:
    description: Paths (absolute, or relative to O(prefix)) the install produces; one missing triggers a build.
    type: list
    elements: str
    default: []
  force:
    description: Build even when the stamp matches.
    type: bool
    default: false
  timeout:
    description: Seconds each command may take.
    type: int
    default: 14400
  overrides:
    description:
      - More of this module's options as one dict, e.g. an inventory variable (the C(colo_host_*_build_options)
        of the C(colo.ft.colo_host) role); checked like the options themselves.
      - A key here wins over the same option given directly. A source here (O(git), O(tarball) or O(apt_package))
        replaces the source given directly, with its O(ref), O(tarball_sha256) and C(apt_*) options.
    type: dict
    default: {}
notes:
  - Needs C(git), C(tar), C(patch) and the component's own build dependencies on the managed host; C(apt-get source)
    needs C(dpkg-dev).
  - The tree is fetched anew for every build and kept after it (under O(work_dir)/O(component)/src), e.g. for
    out-of-tree kernel modules built against it.
seealso:
  - name: The Xen COLO seed
    description: The components and refs colo.ft builds by default (see the README's Xen section).
    link: https://wiki.xenproject.org/wiki/COLO_-_Coarse_Grain_Lock_Stepping
"""

EXAMPLES = r"""
- name: QEMU with replication, from upstream git
  colo.ft.source_build:
    component: qemu
    git: https://gitlab.com/qemu-project/qemu.git
    ref: v11.1.0
    configure_flags: [--target-list=x86_64-softmmu, --enable-replication]
    prefix: /usr/local
    creates: [bin/qemu-system-x86_64]

- name: iptables from the Debian source package, with a patch, without touching the host's apt sources
  colo.ft.source_build:
    component: iptables
    apt_package: iptables
    apt_sources:
      - deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
    patches: [/srv/patches/iptables-colo.patch]
    configure_flags: [--disable-nftables]
    prefix: /opt/colo/iptables

- name: What would be built, and why
  colo.ft.source_build:
    component: iptables
    apt_package: iptables
    prefix: /opt/colo/iptables
  check_mode: true
  register: plan
"""

RETURN = r"""
component:
  description: The component.
  returned: always
  type: str
  sample: iptables
reason:
  description: Why a build ran (or would run), or why none was needed.
  returned: always
  type: str
  sample: "inputs changed: patches"
changed_inputs:
  description: Names of the inputs that differ from the stamp (V(source.ref), V(patches), V(configure), ...).
  returned: always
  type: list
  elements: str
  sample: [patches]
digest:
  description: sha256 over all inputs (the stamp's key).
  returned: always
  type: str
stamp_file:
  description: Path of the build stamp.
  returned: always
  type: str
  sample: /opt/colo/iptables/share/colo-ft/builds/iptables.json
log_file:
  description: Path of the build log.
  returned: always
  type: str
  sample: /var/tmp/colo-ft-build/iptables.log
log_tail:
  description: Last lines of the log.
  returned: failure
  type: str
steps:
  description: The commands run (or that would run, in check mode); empty when nothing was needed.
  returned: always
  type: list
  elements: str
resolved:
  description: What was built - the git commit, the Debian package version or the tarball's sha256.
  returned: when a build ran
  type: str
  sample: 1.8.9-2
source_dir:
  description: The source tree.
  returned: always
  type: str
  sample: /var/tmp/colo-ft-build/iptables/src
build_user:
  description: The user the unprivileged steps ran (or would run) as.
  returned: always
  type: str
  sample: colo-build
elapsed_s:
  description: Seconds the build took (0 when nothing was done).
  returned: always
  type: float
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.colo.ft.plugins.module_utils.colo.build_spec import BuildError
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import InvalidSpec
from ansible_collections.colo.ft.plugins.module_utils.colo.source_build import Builder
from ansible_collections.colo.ft.plugins.module_utils.source_build_params import (
    ARGUMENT_SPEC,
    apply_overrides,
    spec_from_params,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    try:
        apply_overrides(module.params)
    except InvalidSpec as exc:
        module.fail_json(msg=str(exc))
        return
    spec = spec_from_params(module.params)
    base = {"component": spec.component, "stamp_file": spec.stamp_file, "log_file": spec.log_path,
            "source_dir": spec.source_dir}
    try:
        res = Builder(spec, force=module.params["force"]).run(check=module.check_mode)
    except BuildError as exc:
        extra = {"log_tail": exc.log_tail} if exc.log_tail is not None else {}
        module.fail_json(msg=str(exc), **base, **extra)
        return
    except OSError as exc:
        module.fail_json(msg=f"{exc.__class__.__name__}: {exc}", exception=traceback.format_exc(), **base)
        return
    p = res.plan
    module.exit_json(
        changed=res.changed, reason=p.reason, changed_inputs=list(p.changed_inputs),
        digest=p.digest, steps=res.steps, resolved=res.resolved, elapsed_s=res.elapsed_s, build_user=res.build_user,
        **base,
    )


if __name__ == "__main__":
    main()
