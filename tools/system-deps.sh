#!/usr/bin/env bash
# The system parts the test suite needs, beside Python and make (called by `make test`):
#   bubblewrap       the grading sandbox (coursetools/sandbox.py)
#   util-linux       prlimit and setpriv: the sandbox's limits and, as root, its uid drop
#   python3-seccomp  libseccomp for the system Python: a test checks the sandbox's syscall numbers
#   postgresql       a real server on loopback for the shared-gradebook tests
#   chromium         the browser tests (driven by Playwright; its own browser download is not used)
# What is missing is installed where that is possible (Debian or Ubuntu, as root or with sudo
# without a password); otherwise one message lists it with the command to run, and make stops.
set -euo pipefail
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
{ command -v prlimit && command -v setpriv; } >/dev/null 2>&1 || missing+=(util-linux)
/usr/bin/python3 -c "import seccomp" >/dev/null 2>&1 || missing+=(python3-seccomp)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
{ command -v chromium || command -v chromium-browser; } >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO="none"; fi
fi
if command -v apt-get >/dev/null 2>&1 && [ "$SUDO" != "none" ]; then
  echo "make test: installing ${missing[*]} (apt-get)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi
echo "make test needs these system packages, which it cannot install here: ${missing[*]}" >&2
echo "  Debian/Ubuntu: sudo apt-get install ${missing[*]}" >&2
echo "  (other systems: the same parts from your package manager; chromium may be chromium-browser)" >&2
exit 1
