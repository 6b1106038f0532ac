"""Local stand-in for the pip bootstrap script that ansible-test downloads.

ansible-test fetches pypa's get-pip.py from a host outside the package registries,
which this project's machines cannot reach. The job of that script is to put pip
into a fresh virtual environment and install the packages named on its command
line; CPython's own ensurepip does the first half from the wheel it ships, and
pip (from the registry) does the rest. `scripts/sanity-one.sh` places this file
where ansible-test looks for its cached copy, only when no real copy is there.
"""
import subprocess
import sys

GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")


def main():
    args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
    if args:
        subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)


if __name__ == "__main__":
    main()
