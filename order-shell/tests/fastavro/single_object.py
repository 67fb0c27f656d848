#!/usr/bin/env python3
"""Writes one record in Avro single-object encoding with fastavro, an Avro implementation
independent of the project's (apache-avro), to check that what other producers write decodes.

    python3 single_object.py SCHEMA.avsc 'RECORD AS JSON'   ->   the payload, in hex
"""
import io
import json
import sys

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

with open(sys.argv[1]) as schema_file:
    schema = fastavro.parse_schema(json.load(schema_file))
record = json.loads(sys.argv[2])
datum = io.BytesIO()
fastavro.schemaless_writer(datum, schema, record)
# fastavro gives the CRC-64-AVRO fingerprint as the hex of its little-endian bytes, which is
# the order single-object encoding wants.
header = b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
sys.stdout.write((header + datum.getvalue()).hex())
