import sys

from bitcpm_validation.cli import main

sys.exit(main())
