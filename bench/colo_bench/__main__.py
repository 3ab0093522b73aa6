import sys

from colo_bench.cli import main

sys.exit(main())
