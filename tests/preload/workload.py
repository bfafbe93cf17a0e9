"""Allocation-heavy Python workload for the LD_PRELOAD tests.

Builds and discards dicts, lists, strings, sets, bytes and many small
objects, in the main thread and in worker threads, and prints checksums.
Every printed line must be the same whatever allocator serves Python: so
nothing printed depends on addresses (id(), default hashes, the order of
sets of objects hashed by identity) or on timing (the order in which
threads finish).  Usage: workload.py [SCALE]
"""
import collections
import gc
import hashlib
import json
import queue
import random
import re
import sys
import threading
import zlib

SCALE = int(sys.argv[1]) if len(sys.argv) > 1 else 1


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def section(name, value):
    print(f"{name}: {value}", flush=True)


def words(rng, n, lo=3, hi=12):
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(lo, hi)))
            for _ in range(n)]


def dicts(rng):
    d = {}
    for i in range(60000 * SCALE):
        d[f"k{rng.randrange(1 << 24)}"] = [i, str(i), i * 0.5]
    for k in list(d)[::3]:
        del d[k]
    nested = {k: {"v": v[0], "w": {"s": v[1]}} for k, v in d.items()
              if v[0] % 5 == 0}
    counts = collections.Counter(k[-1] for k in d)
    dd = collections.defaultdict(list)
    for k, v in d.items():
        dd[v[0] % 97].append(k)
    od = collections.OrderedDict(sorted(d.items())[:5000])
    od.move_to_end(next(iter(od)))
    return digest((len(d), sorted(d.items())[:50], len(nested),
                   sorted(counts.items()), sorted((k, len(v))
                                                  for k, v in dd.items()),
                   list(od)[-3:]))


def lists(rng):
    xs = [rng.randrange(10 ** 9) for _ in range(200000 * SCALE)]
    ys = sorted(xs)
    zs = [x for x in xs if x % 3]
    zs.sort(key=lambda x: (x % 1000, x))
    grid = [[(i * j) % 101 for j in range(100)] for i in range(300)]
    flat = [v for row in grid for v in row]
    stack = []
    for i in range(100000 * SCALE):
        stack.append((i, [i] * (i % 7)))
        if i % 3 == 0:
            stack.pop(0 if i % 2 else -1)
    dq = collections.deque(maxlen=1000)
    dq.extend(range(50000))
    return digest((ys[::1000], zs[:100], sum(flat), len(stack), stack[-1],
                   list(dq)[:10]))


def strings(rng):
    ws = words(rng, 50000 * SCALE)
    text = " ".join(ws)
    parts = text.split()
    up = text.upper().replace("A", "aa").replace("E", "")
    fmt = ["{:>10}|{:<8}|{:08.3f}".format(w, len(w), i / 7)
           for i, w in enumerate(ws[:20000])]
    found = re.findall(r"\b([a-z])\w*\1\b", text)
    enc = text.encode("utf-8")
    crc = zlib.crc32(enc)
    comp = zlib.compress(enc, 6)
    back = zlib.decompress(comp).decode()
    acc = ""
    for w in ws[:20000]:
        acc += w[:2]
    buf = bytearray()
    for i in range(200000 * SCALE):
        buf += i.to_bytes(4, "little")
    mv = memoryview(buf)[::7]
    return digest((len(parts), hashlib.sha256(up.encode()).hexdigest(),
                   fmt[::997], len(found), sorted(set(found))[:20], crc,
                   back == text, len(acc), hashlib.md5(acc.encode()).hexdigest(),
                   hashlib.sha256(mv.tobytes()).hexdigest()))


def sets(rng):
    a = {rng.randrange(300000) for _ in range(100000 * SCALE)}
    b = {rng.randrange(300000) for _ in range(100000 * SCALE)}
    sa = {str(x) for x in a}
    fs = frozenset(x for x in a if x % 2)
    for x in list(a)[:20000]:
        a.discard(x)
        a.add(-x)
    return digest((len(a | b), len(a & b), len(a - b), len(a ^ b),
                   sorted(a & b)[:30], len(sa), max(sa), min(sa), len(fs),
                   sorted(a)[:10]))


class Node:
    def __init__(self, key, left=None, right=None):
        self.key = key
        self.left = left
        self.right = right
        self.payload = [key] * (key % 5)


class Slot:
    __slots__ = ("a", "b", "c")

    def __init__(self, a, b, c):
        self.a, self.b, self.c = a, b, c


def insert(root, key):
    if root is None:
        return Node(key)
    node = root
    while True:
        if key < node.key:
            if node.left is None:
                node.left = Node(key)
                return root
            node = node.left
        else:
            if node.right is None:
                node.right = Node(key)
                return root
            node = node.right


def inorder(root):
    out, stack, node = [], [], root
    while stack or node is not None:
        while node is not None:
            stack.append(node)
            node = node.left
        node = stack.pop()
        out.append(node.key)
        node = node.right
    return out


def objects(rng):
    total = 0
    keys = []
    for rnd in range(8 * SCALE):
        root = None
        for _ in range(5000):
            root = insert(root, rng.randrange(1 << 30))
        keys = inorder(root)
        total += sum(keys) % 1000003
        slots = [Slot(i, str(i), (i,)) for i in range(5000)]
        total += sum(s.a for s in slots[::10])
        # Reference cycles only the cyclic collector can reclaim.
        ring = [dict(n=i) for i in range(3000)]
        for i, r in enumerate(ring):
            r["next"] = ring[(i + 1) % len(ring)]
        del ring, root, slots
        gc.collect()
    return digest((total, keys[:10], len(keys)))


def json_roundtrip(rng):
    doc = {f"item{i}": {"id": i, "tags": words(rng, 4), "score": i / 3,
                        "nested": [{"k": j, "v": [j] * 3} for j in range(5)]}
           for i in range(5000 * SCALE)}
    s = json.dumps(doc, sort_keys=True)
    back = json.loads(s)
    return digest((len(s), hashlib.sha256(s.encode()).hexdigest(),
                   back == doc))


def worker(idx, results):
    rng = random.Random(1000 + idx)
    acc = 0
    for rnd in range(30 * SCALE):
        d = {rng.randrange(1 << 20): words(rng, 3) for _ in range(2000)}
        lst = sorted(d.items())
        s = "".join(w for _, ws in lst[:500] for w in ws)
        st = set(s)
        acc = (acc * 31 + len(d) + len(s) + len(st) + lst[0][0]) % (1 << 61)
        del d, lst, s, st
    results[idx] = acc


def threads():
    results = [None] * 4
    ts = [threading.Thread(target=worker, args=(i, results)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    # Producer/consumer: blocks made in one thread are freed in another.
    q = queue.Queue(maxsize=64)
    sums = [0, 0]

    def producer():
        rng = random.Random(7)
        for i in range(20000 * SCALE):
            q.put([rng.randrange(1000) for _ in range(i % 17)] + [str(i)])
        q.put(None)
        q.put(None)

    def consumer(slot):
        while True:
            item = q.get()
            if item is None:
                return
            sums[slot] += sum(item[:-1]) + len(item[-1])

    cs = [threading.Thread(target=consumer, args=(i,)) for i in range(2)]
    p = threading.Thread(target=producer)
    for t in cs + [p]:
        t.start()
    for t in cs + [p]:
        t.join()
    # Which consumer took which item depends on timing: print the total.
    return digest((results, sum(sums)))


def main():
    rng = random.Random(12345)
    section("dicts", dicts(rng))
    section("lists", lists(rng))
    section("strings", strings(rng))
    section("sets", sets(rng))
    section("objects", objects(rng))
    section("json", json_roundtrip(rng))
    section("threads", threads())
    print("done")


if __name__ == "__main__":
    main()
