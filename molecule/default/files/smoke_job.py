"""A small PyFlink job for verification: Kafka → Python UDF → Kafka."""

import sys

from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment
from pyflink.table.udf import udf

bootstrap, source, sink = sys.argv[1:4]
env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
env.get_config().set("pipeline.name", "cryptomon-verify-smoke")


@udf(result_type=DataTypes.STRING())
def shout(text: str) -> str:  # runs in the Python worker: proves the venv interpreter works
    return text.upper() + "!"


env.create_temporary_system_function("shout", shout)
for name, topic, extra in (("src", source, "'scan.startup.mode' = 'earliest-offset', 'properties.group.id' = 'verify-smoke',"),
                           ("dst", sink, "")):
    env.execute_sql(f"""
        CREATE TABLE {name} (msg STRING) WITH (
          'connector' = 'kafka', 'topic' = '{topic}',
          'properties.bootstrap.servers' = '{bootstrap}', {extra}
          'format' = 'raw')""")
env.execute_sql("INSERT INTO dst SELECT shout(msg) FROM src")
