#!/usr/bin/env python3
"""Builds examples/data/fashion-mnist-subset from the full Fashion-MNIST idx files.

Keeps the first TRAIN_PER_CLASS training and TEST_PER_CLASS test images of each class, in file order (the same rule
FashionMnist.train/test(perClass) applies, so a subset of the subset equals the same subset of the full set), and
writes them as gzipped idx files. Usage (full set from Debian's dataset-fashion-mnist package):

    python3 examples/data/make_fashion_mnist_subset.py /usr/share/datasets/fashion-mnist examples/data/fashion-mnist-subset
"""
import gzip
import struct
import sys

TRAIN_PER_CLASS = 1000
TEST_PER_CLASS = 200


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    rank = magic & 0xFF
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return dims, data[4 + 4 * rank:]


def write_idx(path, dims, payload):
    header = struct.pack(">I", 0x0800 | len(dims)) + struct.pack(">" + "I" * len(dims), *dims)
    # mtime=0 keeps the files byte-identical between runs
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
        f.write(header + payload)


def subset(source, target, split, per_class):
    image_dims, images = read_idx(f"{source}/{split}-images-idx3-ubyte.gz")
    _, labels = read_idx(f"{source}/{split}-labels-idx1-ubyte.gz")
    pixels = image_dims[1] * image_dims[2]
    taken = [0] * 10
    chosen = []
    for i, label in enumerate(labels):
        if taken[label] < per_class:
            taken[label] += 1
            chosen.append(i)
    write_idx(f"{target}/{split}-images-idx3-ubyte.gz", (len(chosen), image_dims[1], image_dims[2]),
              b"".join(images[i * pixels:(i + 1) * pixels] for i in chosen))
    write_idx(f"{target}/{split}-labels-idx1-ubyte.gz", (len(chosen),), bytes(labels[i] for i in chosen))
    print(f"{split}: {len(chosen)} images, per class {taken}")


if __name__ == "__main__":
    subset(sys.argv[1], sys.argv[2], "train", TRAIN_PER_CLASS)
    subset(sys.argv[1], sys.argv[2], "t10k", TEST_PER_CLASS)
