#!/usr/bin/env python3
"""Embed the numbered SQL migrations into a C source file: brokerd carries its schema."""
import os
import re
import sys

out, inputs = sys.argv[1], sorted(sys.argv[2:], key=os.path.basename)
lines = ['/* Generated from the brokerd/sql migrations by embed.py: do not edit. */',
         '#include "migrate.h"', '']
entries = []
for k, path in enumerate(inputs):
    name = os.path.basename(path)
    m = re.match(r'^(\d{4})-[a-z0-9-]+\.sql$', name)
    if not m:
        sys.exit(f'{path}: migration names are NNNN-name.sql')
    data = open(path, 'rb').read() + b'\0'
    lines.append(f'static const char sql_{k}[] = {{')
    for i in range(0, len(data), 16):
        lines.append('\t' + ', '.join('0x%02x' % b for b in data[i:i + 16]) + ',')
    lines.append('};')
    entries.append(f'\t{{{int(m.group(1))}, "{name}", sql_{k}}},')
lines += ['', 'const struct migration migrations[] = {'] + entries + ['\t{0, NULL, NULL},', '};', '']
open(out, 'w').write('\n'.join(lines))
