import sys

from cryptomon.alerter.cli import main

sys.exit(main())
