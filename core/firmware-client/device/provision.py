#!/usr/bin/env python3
"""Writes a device's identity into the PROVISIONING block of a firmware image
(the factory step): its certificate, its P-256 private key, the CA, the
server's DNS name and the server key pin, in the layout of `Provisioning` in
src/main.rs. Reads PEM files as `ferry-certs` writes them; standard library only.

usage: provision.py IMAGE.elf OUT.elf --cert C.crt --key C.key --ca ca.crt --server-name NAME --pin HEX
"""
import argparse
import base64
import re
import struct
import sys

CERT_MAX = 1024
NAME_MAX = 64


def pem_der(path, label):
    text = open(path).read()
    match = re.search(r"-----BEGIN %s-----(.*?)-----END %s-----" % (label, label), text, re.S)
    if not match:
        sys.exit("provision.py: no %s in %s" % (label, path))
    return base64.b64decode("".join(match.group(1).split()))


def p256_scalar(path):
    """The private scalar of a PKCS#8 or SEC1 P-256 key: the OCTET STRING of 32
    bytes after ECPrivateKey's version 1."""
    text = open(path).read()
    label = "PRIVATE KEY" if "BEGIN PRIVATE KEY" in text else "EC PRIVATE KEY"
    der = pem_der(path, label)
    at = der.find(b"\x02\x01\x01\x04\x20")
    if at < 0:
        sys.exit("provision.py: %s is not a P-256 key" % path)
    return der[at + 5 : at + 37]


def block(cert, ca, key, server_name, pin):
    if len(cert) > CERT_MAX or len(ca) > CERT_MAX:
        sys.exit("provision.py: a certificate is over %d bytes" % CERT_MAX)
    if len(server_name) > NAME_MAX or len(pin) != 32 or len(key) != 32:
        sys.exit("provision.py: bad server name, pin or key length")
    return b"".join(
        [
            struct.pack("<I", len(cert)),
            cert.ljust(CERT_MAX, b"\0"),
            struct.pack("<I", len(ca)),
            ca.ljust(CERT_MAX, b"\0"),
            key,
            struct.pack("<I", len(server_name)),
            server_name.ljust(NAME_MAX, b"\0"),
            pin,
        ]
    )


def symbol_file_offset(elf, name):
    """File offset and size of a symbol in a 32-bit little-endian ELF."""
    if elf[:5] != b"\x7fELF\x01" or elf[5] != 1:
        sys.exit("provision.py: not a 32-bit little-endian ELF")
    shoff, = struct.unpack_from("<I", elf, 0x20)
    shentsize, shnum = struct.unpack_from("<HH", elf, 0x2E)
    sections = [struct.unpack_from("<IIIIIIIIII", elf, shoff + i * shentsize) for i in range(shnum)]
    for sh in sections:
        if sh[1] != 2:  # SHT_SYMTAB
            continue
        strtab = sections[sh[6]]
        for at in range(sh[4], sh[4] + sh[5], 16):
            st_name, value, size, _info, _other, shndx = struct.unpack_from("<IIIBBH", elf, at)
            end = elf.index(b"\0", strtab[4] + st_name)
            if elf[strtab[4] + st_name : end] == name:
                home = sections[shndx]
                return home[4] + value - home[3], size
    sys.exit("provision.py: no symbol %s" % name.decode())


def main():
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("image")
    args.add_argument("out")
    args.add_argument("--cert", required=True)
    args.add_argument("--key", required=True)
    args.add_argument("--ca", required=True)
    args.add_argument("--server-name", required=True)
    args.add_argument("--pin", required=True, help="64 hex digits: SHA-256 of the server's SubjectPublicKeyInfo")
    a = args.parse_args()
    data = block(
        pem_der(a.cert, "CERTIFICATE"),
        pem_der(a.ca, "CERTIFICATE"),
        p256_scalar(a.key),
        a.server_name.encode(),
        bytes.fromhex(a.pin),
    )
    elf = bytearray(open(a.image, "rb").read())
    offset, size = symbol_file_offset(elf, b"PROVISIONING")
    if size != len(data):
        sys.exit("provision.py: PROVISIONING is %d bytes in the image, the block %d" % (size, len(data)))
    elf[offset : offset + size] = data
    open(a.out, "wb").write(elf)


if __name__ == "__main__":
    main()
