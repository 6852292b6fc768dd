import sys

from hub.dashboard.app import main

sys.exit(main())
