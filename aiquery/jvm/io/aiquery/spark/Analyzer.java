package io.aiquery.spark;

/**
 * aiquery's analysis of one bound call (JSON in, JSON out), implemented in Python through
 * Py4J's callback server: by the application's own Python driver ({@code
 * aiquery.spark.extension.install}), or, in a JVM that has none (the {@code spark-sql} shell,
 * the Thrift and Connect servers), by a Python companion attached to this JVM ({@link
 * PythonCompanion}). Either way calls are analysed, and bound, in one long-lived driver-side
 * Python: its endpoints, its usage committer and its coordinator.
 */
public interface Analyzer {
  /** The call checked and its endpoint resolved; starts nothing. */
  String analyze(String call);

  /** An analysed call's spec bound for execution: {"spec": ..., "conf": the session's}. */
  String bind(String spec);

  /** Commit the usage spooled so far, so a read of the usage table sees it. */
  void flush();
}
