package io.aiquery.spark;

/**
 * Does nothing: {@code spark-submit --packages <Delta> --class io.aiquery.spark.Resolve} runs
 * it so that Spark's own resolver fetches Delta's jars into a directory of aiquery's (see
 * {@code aiquery.spark.extension.delta_jars}), for the driver's class path of JVMs started
 * outside Python.
 */
public final class Resolve {
  private Resolve() {}

  public static void main(String[] args) {}
}
