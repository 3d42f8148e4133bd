"""`python -m cryptomon.producer <exchange>`: same as the cryptomon-producer script."""
import sys

from cryptomon.producer.cli import main

sys.exit(main())
