# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What "nothing was written" compares, for unit and integration tests alike."""
import os
import stat


def tree(top):
    """Every path under ``top`` with its type, mode, content (regular files) and target (links)."""
    out = {}
    for directory, dirs, files in os.walk(str(top)):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            data = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    data = handle.read()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(path)
            out[path] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), data)
    return out
