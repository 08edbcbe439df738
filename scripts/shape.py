#!/usr/bin/env python3
# Kept in the project (from the team tools) so reviewers and CI can run it: scripts/shape.py . --skip bench/
"""shape: long functions and long files in a Rust workspace's product code.

    shape.py [ROOT] [--fn-max 80] [--file-max 600] [--skip PREFIX]... [--json]

Product code = *.rs under relay/, agent/, viewer/, crates/*/src, bench/src (tests/, */tests/, fuzz/, examples
and #[cfg(test)] modules are left out). A function's length is counted from its `fn` line to its closing brace,
after blanking comments, strings and char literals so that braces inside them do not count. Exit 1 when anything
is over a limit; the last line is a one-line summary.
"""
import json
import os
import re
import subprocess
import sys

FN_RE = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+"[^"]*"\s+)?fn\s+(\w+)')
PRODUCT = re.compile(r'^(relay|agent|viewer)/src/|^crates/[^/]+/src/|^bench/src/')


def blank(src):
    """Comments, strings and char literals replaced by spaces, newlines kept."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith('//', i):
            j = src.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i)); i = j; continue
        if src.startswith('/*', i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith('/*', j): depth += 1; j += 2
                elif src.startswith('*/', j): depth -= 1; j += 2
                else: j += 1
            out.append(''.join(ch if ch == '\n' else ' ' for ch in src[i:j])); i = j; continue
        if c in 'rb' and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == '_')):
            m = re.match(r'b?r(#*)"', src[i:i + 12])
            if m:
                end = '"' + m.group(1)
                j = src.find(end, i + len(m.group(0)))
                j = n if j < 0 else j + len(end)
                out.append(''.join(ch if ch == '\n' else ' ' for ch in src[i:j])); i = j; continue
        if c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == '\\' else 1
            j += 1
            out.append(''.join(ch if ch == '\n' else ' ' for ch in src[i:j])); i = j; continue
        if c == "'":
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|\\.|[^\\'])'", src[i:i + 12])
            if m:
                out.append(' ' * len(m.group(0))); i += len(m.group(0)); continue
        out.append(c); i += 1
    return ''.join(out)


def test_module_ranges(lines):
    """Line ranges of `#[cfg(test)] mod x { ... }` blocks (0-based, inclusive)."""
    ranges = []
    for k, line in enumerate(lines):
        if '#[cfg(test)]' in line:
            for m in range(k + 1, min(k + 4, len(lines))):
                if re.match(r'^\s*(pub\s+)?mod\s+\w+\s*\{', lines[m]):
                    ranges.append((m, close_line(lines, m)))
                    break
    return ranges


def close_line(lines, start):
    depth, seen = 0, False
    for k in range(start, len(lines)):
        for ch in lines[k]:
            if ch == '{': depth += 1; seen = True
            elif ch == '}':
                depth -= 1
                if seen and depth == 0:
                    return k
    return len(lines) - 1


def functions(path):
    src = blank(open(path, encoding='utf-8', errors='replace').read())
    lines = src.split('\n')
    skip = test_module_ranges(lines)
    found = []
    for k, line in enumerate(lines):
        m = FN_RE.match(line)
        if not m or any(a <= k <= b for a, b in skip):
            continue
        # the body starts at the first '{' before any ';' (a ';' first means a declaration without body)
        j, body = k, None
        while j < len(lines) and body is None:
            seg = lines[j] if j > k else line[m.end():]
            for ch in seg:
                if ch == ';':
                    body = -1; break
                if ch == '{':
                    body = j; break
            j += 1
        if body is None or body < 0:
            continue
        end = close_line(lines, body)
        found.append((m.group(7), k + 1, end - k + 1))
    return found, len(src.split('\n')) - (1 if src.endswith('\n') else 0)


def main():
    args = sys.argv[1:]
    root = '.'
    fn_max, file_max, as_json, skip = 80, 600, False, []
    i = 0
    while i < len(args):
        a = args[i]
        if a == '--fn-max': fn_max = int(args[i + 1]); i += 2; continue
        if a == '--file-max': file_max = int(args[i + 1]); i += 2; continue
        if a == '--json': as_json = True; i += 1; continue
        if a == '--skip': skip.append(args[i + 1]); i += 2; continue
        root = a; i += 1
    files = subprocess.check_output(['git', '-C', root, 'ls-files', '*.rs'], text=True).split()
    files = [f for f in files if PRODUCT.search(f) and '/tests/' not in f and '/examples/' not in f
             and not f.endswith('/tests.rs') and not any(f.startswith(p) for p in skip)]
    long_fns, long_files, count = [], [], 0
    for f in files:
        fns, n = functions(os.path.join(root, f))
        count += len(fns)
        if n > file_max:
            long_files.append((f, n))
        for name, line, length in fns:
            if length > fn_max:
                long_fns.append((f, line, name, length))
    long_fns.sort(key=lambda r: -r[3])
    long_files.sort(key=lambda r: -r[1])
    if as_json:
        print(json.dumps({'functions': count, 'long_functions': long_fns, 'long_files': long_files}))
    else:
        for f, n in long_files:
            print(f"file {f}: {n} lines")
        for f, line, name, length in long_fns:
            print(f"fn {f}:{line} {name}: {length} lines")
    summary = (f"{len(long_fns)} of {count} product functions over {fn_max} lines, "
               f"{len(long_files)} of {len(files)} product files over {file_max} lines")
    print(("ok: " if not long_fns and not long_files else "FAIL: ") + summary)
    sys.exit(0 if not long_fns and not long_files else 1)


if __name__ == '__main__':
    main()
