#!/usr/bin/env python3
"""Lays out the TensorFlow C library from a `tensorflow-cpu` wheel the way
@tensorflow/tfjs-node's binding.gyp expects it (the layout of the official
libtensorflow tarball):

    <dest>/lib/libtensorflow_cc.so.2          the C/C++ API (SONAME libtensorflow_cc.so.2)
    <dest>/lib/libtensorflow.so{,.2}          -> libtensorflow_cc.so.2   (for -ltensorflow)
    <dest>/lib/libtensorflow_framework.so.2
    <dest>/lib/libtensorflow_framework.so     -> libtensorflow_framework.so.2
    <dest>/include/tensorflow/c/...           public C API headers and what they include

Usage: extract-wheel.py WHEEL DEST   (DEST must not exist; written via DEST.tmp, then renamed)
"""
import os
import re
import shutil
import sys
import zipfile

# Public headers of the official libtensorflow tarball; everything they include
# (transitively, quoted includes only) is copied too.
SEEDS = [
    "tensorflow/c/c_api.h",
    "tensorflow/c/c_api_experimental.h",
    "tensorflow/c/c_api_macros.h",
    "tensorflow/c/tf_attrtype.h",
    "tensorflow/c/tf_buffer.h",
    "tensorflow/c/tf_datatype.h",
    "tensorflow/c/tf_file_statistics.h",
    "tensorflow/c/tf_status.h",
    "tensorflow/c/tf_tensor.h",
    "tensorflow/c/tf_tstring.h",
    "tensorflow/c/env.h",
    "tensorflow/c/logging.h",
    "tensorflow/c/eager/c_api.h",
    "tensorflow/c/eager/c_api_experimental.h",
    "tensorflow/c/eager/dlpack.h",
    # tfjs-node's binding includes this one directly.
    "tensorflow/core/platform/ctstring_internal.h",
]
INCLUDE_PREFIX = "tensorflow/include/"
LIBS = {
    "tensorflow/libtensorflow_cc.so.2": "libtensorflow_cc.so.2",
    "tensorflow/libtensorflow_framework.so.2": "libtensorflow_framework.so.2",
}
LINKS = {
    "libtensorflow.so": "libtensorflow_cc.so.2",
    "libtensorflow.so.2": "libtensorflow_cc.so.2",
    "libtensorflow_framework.so": "libtensorflow_framework.so.2",
}


def main(wheel: str, dest: str) -> None:
    if os.path.exists(dest):
        sys.exit(f"extract-wheel: {dest} already exists")
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        missing_libs = [m for m in LIBS if m not in names]
        if missing_libs:
            sys.exit(f"extract-wheel: {wheel} has no {', '.join(missing_libs)}: "
                     "tensorflow-cpu wheels ship the C library as libtensorflow_cc.so.2 from 2.12 on")
        os.makedirs(os.path.join(tmp, "lib"))
        for member, name in LIBS.items():
            with z.open(member) as src, open(os.path.join(tmp, "lib", name), "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.chmod(os.path.join(tmp, "lib", name), 0o755)
        for link, target in LINKS.items():
            os.symlink(target, os.path.join(tmp, "lib", link))

        todo, seen = list(SEEDS), set()
        while todo:
            header = todo.pop()
            if header in seen:
                continue
            seen.add(header)
            member = INCLUDE_PREFIX + header
            if member not in names:
                if header in SEEDS:
                    sys.exit(f"extract-wheel: {wheel} lacks header {header}")
                continue  # system or third-party header outside the wheel's include tree
            text = z.read(member)
            out = os.path.join(tmp, "include", header)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as f:
                f.write(text)
            todo.extend(re.findall(r'#include\s+"([^"]+)"', text.decode("utf-8", "replace")))
        licenses = [n for n in names if n.endswith(".dist-info/LICENSE")]
        if licenses:
            with open(os.path.join(tmp, "LICENSE"), "wb") as f:
                f.write(z.read(licenses[0]))
    os.rename(tmp, dest)
    print(f"extract-wheel: {len(seen)} headers, {len(LIBS)} libraries -> {dest}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
