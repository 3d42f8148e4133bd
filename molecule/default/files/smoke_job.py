"""A small PyFlink job for verification: Kafka → Python UDF → Kafka.

argv: bootstrap source sink [user password-dir ca-file]: with a user, SASL_SSL/SCRAM, the
password read by Kafka's DirectoryConfigProvider from <password-dir>/kafka-password on the
Flink hosts (as the product jobs do), never written into the SQL."""

import sys

from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment
from pyflink.table.udf import udf

bootstrap, source, sink = sys.argv[1:4]
security = ""
if len(sys.argv) > 4:
    user, password_dir, ca = sys.argv[4:7]
    shaded = "org.apache.flink.kafka.shaded.org.apache.kafka.common"
    security = f"""
          'properties.security.protocol' = 'SASL_SSL', 'properties.sasl.mechanism' = 'SCRAM-SHA-512',
          'properties.config.providers' = 'dir',
          'properties.config.providers.dir.class' = '{shaded}.config.provider.DirectoryConfigProvider',
          'properties.sasl.jaas.config' = '{shaded}.security.scram.ScramLoginModule required
            username="{user}" password="${{dir:{password_dir}:kafka-password}}";',
          'properties.ssl.truststore.type' = 'PEM', 'properties.ssl.truststore.location' = '{ca}',"""
env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
env.get_config().set("pipeline.name", "cryptomon-verify-smoke")


@udf(result_type=DataTypes.STRING())
def shout(text: str) -> str:  # runs in the Python worker: proves the venv interpreter works
    return text.upper() + "!"


env.create_temporary_system_function("shout", shout)
for name, topic, extra in (("src", source,
                            "'scan.startup.mode' = 'earliest-offset', 'properties.group.id' = 'verify-smoke',"),
                           ("dst", sink, "")):
    env.execute_sql(f"""
        CREATE TABLE {name} (msg STRING) WITH (
          'connector' = 'kafka', 'topic' = '{topic}',
          'properties.bootstrap.servers' = '{bootstrap}', {extra} {security}
          'format' = 'raw')""")
env.execute_sql("INSERT INTO dst SELECT shout(msg) FROM src")
