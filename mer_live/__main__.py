import sys

from mer_live.cli import main

sys.exit(main())
