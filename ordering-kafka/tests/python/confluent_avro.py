#!/usr/bin/env python3
"""Confluent's own Avro serializer and deserializer (Python's confluent_kafka), against a
schema registry: records as Java's, Python's and Kafka Connect's producers write them, and
read as their consumers read them. An implementation nobody on this project wrote.

    python3 confluent_avro.py serialize URL TOPIC SCHEMA.avsc 'RECORD AS JSON'  -> payload, hex
    python3 confluent_avro.py deserialize URL TOPIC HEX                          -> record, JSON

The serializer registers its schema under TOPIC-value (confluent_kafka's defaults:
auto.register.schemas, the topic name strategy). REGISTRY_USER_INFO, if set, is the basic
auth user info (user:password).
"""
import json
import os
import sys

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main():
    command, url, topic = sys.argv[1:4]
    conf = {"url": url}
    if os.environ.get("REGISTRY_USER_INFO"):
        conf["basic.auth.user.info"] = os.environ["REGISTRY_USER_INFO"]
    client = SchemaRegistryClient(conf)
    context = SerializationContext(topic, MessageField.VALUE)
    if command == "serialize":
        with open(sys.argv[4]) as schema_file:
            schema = schema_file.read()
        record = json.loads(sys.argv[5])
        serializer = AvroSerializer(client, schema, conf={"auto.register.schemas": True})
        sys.stdout.write(serializer(record, context).hex())
    elif command == "deserialize":
        deserializer = AvroDeserializer(client)
        sys.stdout.write(json.dumps(deserializer(bytes.fromhex(sys.argv[4]), context)))
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
