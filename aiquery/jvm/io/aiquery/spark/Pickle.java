package io.aiquery.spark;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;

/**
 * The command of the Python UDF, as PySpark's worker reads it ({@code read_command}: a pickled
 * {@code (function, return type)} pair), written with four pickle opcodes instead of a pickler:
 * {@code (aiquery.spark.extension.udf_for(spec), _parse_datatype_json_string(type_json))}.
 * Only module-level names are referenced, so nothing but aiquery and PySpark must be
 * importable on executors.
 */
final class Pickle {
  private final ByteArrayOutputStream out = new ByteArrayOutputStream();

  private Pickle() {
    out.write(0x80); // PROTO 2
    out.write(2);
  }

  static byte[] udfCommand(String spec, String typeJson) {
    return new Pickle()
        .global("aiquery.spark.extension", "udf_for")
        .string(spec)
        .call()
        .global("pyspark.sql.types", "_parse_datatype_json_string")
        .string(typeJson)
        .call()
        .pair();
  }

  private Pickle global(String module, String name) {
    out.write('c'); // GLOBAL module\nname\n
    bytes((module + "\n" + name + "\n").getBytes(StandardCharsets.UTF_8));
    return this;
  }

  private Pickle string(String value) {
    byte[] b = value.getBytes(StandardCharsets.UTF_8);
    out.write('X'); // BINUNICODE, a 4-byte little-endian length, then UTF-8
    for (int shift = 0; shift < 32; shift += 8) out.write((b.length >>> shift) & 0xff);
    bytes(b);
    return this;
  }

  private Pickle call() {
    out.write(0x85); // TUPLE1: the one argument
    out.write('R'); // REDUCE: call the global with it
    return this;
  }

  private byte[] pair() {
    out.write(0x86); // TUPLE2
    out.write('.'); // STOP
    return out.toByteArray();
  }

  private void bytes(byte[] b) {
    out.write(b, 0, b.length);
  }
}
