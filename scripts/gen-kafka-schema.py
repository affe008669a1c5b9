#!/usr/bin/env python3
"""Generate protocol/src/kafka/schema_*.rs from kafka-protocol's own request decoders.

The walk in protocol/src/kafka/walk.rs proves every length in a request sane before
kafka-protocol decodes it; it needs the exact field layout the crate reads, per version.
This script reads the crate's generated `impl Decodable for ...Request*` code (the one
source of truth for what the crate will read) and writes it down as static tables.
Run it again after upgrading kafka-protocol, then `cargo fmt` and the kafka tests:

    python3 scripts/gen-kafka-schema.py ~/.cargo/registry/src/*/kafka-protocol-0.18.0
"""
import re
import sys
from pathlib import Path

# (API name, crate file, accepted min, accepted max, output file). The versions are what
# the listener serves (KAFKA.md caps); anything outside is UnsupportedVersion.
APIS = [
    ("ApiVersions", "api_versions_request", 0, 4, "data"),
    ("Metadata", "metadata_request", 0, 9, "data"),
    ("Produce", "produce_request", 3, 12, "data"),
    ("Fetch", "fetch_request", 4, 12, "data"),
    ("ListOffsets", "list_offsets_request", 1, 7, "data"),
    ("FindCoordinator", "find_coordinator_request", 0, 6, "group"),
    ("JoinGroup", "join_group_request", 0, 7, "group"),
    ("SyncGroup", "sync_group_request", 0, 5, "group"),
    ("Heartbeat", "heartbeat_request", 0, 4, "group"),
    ("LeaveGroup", "leave_group_request", 0, 5, "group"),
    ("OffsetCommit", "offset_commit_request", 2, 8, "group"),
    ("OffsetFetch", "offset_fetch_request", 1, 7, "group"),
    ("DescribeGroups", "describe_groups_request", 0, 5, "group"),
    ("ListGroups", "list_groups_request", 0, 4, "group"),
    ("DeleteGroups", "delete_groups_request", 0, 2, "group"),
    ("InitProducerId", "init_producer_id_request", 0, 4, "admin"),
    ("CreateTopics", "create_topics_request", 2, 7, "admin"),
    ("DeleteTopics", "delete_topics_request", 1, 6, "admin"),
    ("DescribeConfigs", "describe_configs_request", 1, 4, "admin"),
    ("OffsetForLeaderEpoch", "offset_for_leader_epoch_request", 2, 4, "admin"),
    ("DescribeCluster", "describe_cluster_request", 0, 1, "admin"),
    ("CreatePartitions", "create_partitions_request", 0, 3, "admin"),
    ("SaslHandshake", "sasl_handshake_request", 0, 1, "admin"),
    ("SaslAuthenticate", "sasl_authenticate_request", 0, 2, "admin"),
]

FIXED = {"Int8": 1, "Int16": 2, "Int32": 4, "Int64": 8, "Float64": 8, "Boolean": 1, "Uuid": 16}
LEAF = {"String": "STR", "CompactString": "CSTR", "Bytes": "BYTES", "CompactBytes": "CBYTES"}


def snake_upper(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def struct_fields(src):
    """struct name -> {field: element struct name or None}"""
    out = {}
    for m in re.finditer(r"pub struct (\w+) \{(.*?)\n\}", src, re.S):
        fields = {}
        for fm in re.finditer(r"pub (\w+): ([^\n]+),", m.group(2)):
            idents = re.findall(r"\w+", fm.group(2))
            fields[fm.group(1)] = idents[-1]
        out[m.group(1)] = fields
    return out


def cond_range(cond):
    lo, hi = -1, 99
    for op, n in re.findall(r"version (>=|<=|==) (\d+)", cond):
        n = int(n)
        if op == ">=":
            lo = max(lo, n)
        elif op == "<=":
            hi = min(hi, n)
        else:
            lo, hi = max(lo, n), min(hi, n)
    return lo, hi


def negate(rng):
    lo, hi = rng
    if lo == -1:
        return (hi + 1, 99)
    if hi == 99:
        return (-1, lo - 1)
    return None  # an else branch that only holds a default value


def ty_expr(expr, field, structs, owner):
    expr = expr.replace(" ", "")
    m = re.fullmatch(r"types::(Compact)?Array\(types::(\w+)(\{version\})?\)", expr)
    if m:
        wrap = "CARR" if m.group(1) else "ARR"
        return f"{wrap}(&{leaf(m.group(2), field, structs, owner)})"
    m = re.fullmatch(r"types::(\w+)(\{version\})?", expr)
    return leaf(m.group(1), field, structs, owner)


def leaf(name, field, structs, owner):
    if name in FIXED:
        return f"Ty::Fixed({FIXED[name]})"
    if name in LEAF:
        return f"Ty::{LEAF[name].title().replace('Cstr', 'CStr').replace('Cbytes', 'CBytes')}"
    if name == "Struct":
        return f"Ty::Struct(&{snake_upper(structs[owner][field])})"
    raise SystemExit(f"unknown type {name} in {owner}.{field}")


def parse_decode(body, owner, structs):
    """Returns (fields, flexible_from, tags) of one decode body."""
    fields, tags, stack = [], [], []
    field, flexible, tag, tag_depth = None, None, None, 0
    for line in [l.strip() for l in body.splitlines()][4:]:  # fn line, version bail
        if line.startswith("Ok(Self {"):
            break
        if line.startswith("let num_tagged_fields"):
            flexible = rng(stack)[0]
            continue
        m = re.match(r"(\d+) => \{$", line)
        if m:
            tag, tag_depth = int(m.group(1)), len(stack)
            stack.append((-1, 99))
            continue
        m = re.match(r"let (?:mut )?(\w+)(?:: \w+)? = (.*)$", line)
        if m:
            field, rest = m.group(1), m.group(2)
            if rest.startswith("if "):
                stack.append(cond_range(rest))
            elif rest.startswith("types::") and field not in ("tag", "size", "num_tagged_fields"):
                emit(fields, stack, ty_expr(rest.split(".decode")[0], field, structs, owner), field)
            elif rest.endswith("{"):
                stack.append((-1, 99))
            continue
        if line == "} else {":
            stack.append(negate(stack.pop()))
            continue
        m = re.match(r"if (.*) \{$", line)
        if m:
            stack.append(cond_range(m.group(1)))
            continue
        if line.endswith("{"):
            stack.append((-1, 99))
            continue
        if line in ("}", "};"):
            stack.pop()
            if tag is not None and len(stack) <= tag_depth:
                tag = None
            continue
        m = re.match(r"(\w+) = (types::.*)\.decode\(buf\)\?;$", line)
        if m and tag is not None:
            tags.append((tag, rng(stack), ty_expr(m.group(2), m.group(1), structs, owner)))
            continue
        m = re.match(r"(types::.*)\.decode\(buf\)\?$", line)
        if m:
            emit(fields, stack, ty_expr(m.group(1), field, structs, owner), field)
            continue
        if "decode(buf)" in line:
            raise SystemExit(f"unparsed read in {owner}: {line}")
    return fields, flexible, tags


def rng(stack):
    lo, hi = -1, 99
    for r in stack:
        if r is None:
            raise SystemExit("read under a non-contiguous condition")
        lo, hi = max(lo, r[0]), min(hi, r[1])
    return lo, hi


def emit(fields, stack, ty, field):
    fields.append((rng(stack), ty, field))


def clamp(r, lo, hi):
    return max(r[0], lo), min(r[1], hi)


def render_struct(name, parsed, lo, hi, module):
    fields, flexible, tags = parsed
    out = [f"pub(super) static {snake_upper(name)}: Schema = Schema {{",
           f'    name: "{name}",',
           f"    size: size_of::<{module}::{name}>(),", "    fields: &["]
    for r, ty, field in fields:
        a, b = clamp(r, lo, hi)
        if a <= b:
            out.append(f"        f({a}, {b}, {ty}), // {field}")
    out.append("    ],")
    out.append(f"    flexible_from: {flexible if flexible is not None else 'i16::MAX'},")
    out.append("    tags: &[")
    for t, r, ty in tags:
        out.append(f"        Tag {{ tag: {t}, from: {max(r[0], 0)}, ty: {ty} }},")
    if not tags:
        out[-1] = "    tags: &[],"
        return "\n".join(out + ["};"])
    out.append("    ],")
    out.append("};")
    return "\n".join(out)


HEADER = """//! Generated by scripts/gen-kafka-schema.py from kafka-protocol {crate}'s request
//! decoders: the field layout per version that the crate reads, for the walk in
//! walk.rs. Do not edit by hand; regenerate after upgrading the crate.

use std::mem::size_of;

use kafka_protocol::messages::{{{modules}}};

use super::schema::{{{uses}}};
"""


def main():
    root = Path(sys.argv[1])
    crate = root.name.split("-")[-1]
    outdir = Path(__file__).resolve().parent.parent / "protocol/src/kafka"
    files, table = {}, []
    for api, fname, lo, hi, group in APIS:
        src = (root / "src/messages" / f"{fname}.rs").read_text()
        structs = struct_fields(src)
        rendered = {}
        for m in re.finditer(r"impl Decodable for (\w+) \{\n(.*?)\n\}\n", src, re.S):
            parsed = parse_decode(m.group(2), m.group(1), structs)
            rendered[m.group(1)] = render_struct(m.group(1), parsed, lo, hi, fname)
        top = "".join(w.title() for w in fname.split("_"))
        # Only the structs an accepted version reaches.
        reach, todo = set(), [top]
        while todo:
            name = todo.pop()
            if name not in reach:
                reach.add(name)
                todo += [n for n in rendered if f"&{snake_upper(n)})" in rendered[name]]
        files.setdefault(group, []).extend(t for n, t in rendered.items() if n in reach)
        table.append(f"    ({api}, {lo}, {hi}, &schema_{group}::{snake_upper(top)}),")
    for group, parts in files.items():
        body = "\n\n".join(parts) + "\n"
        names = ["f", "Schema", "Tag", "Ty", "ARR", "CARR"]
        uses = ", ".join(n for n in names if re.search(rf"\b{n}\b", body))
        modules = ", ".join(sorted(set(re.findall(r"size_of::<(\w+)::", body))))
        text = HEADER.format(crate=crate, uses=uses, modules=modules) + "\n" + body
        (outdir / f"schema_{group}.rs").write_text(text)
    print("\n".join(table))


if __name__ == "__main__":
    main()
