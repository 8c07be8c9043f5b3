package io.aiquery.spark;

import java.io.IOException;
import java.net.InetAddress;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.util.ShutdownHookManager;

/**
 * The Python driver of a JVM that has none: the {@code spark-sql} shell, the Thrift JDBC
 * server, a Spark Connect server. On the first {@code ai_query} call this JVM analyses, it
 * opens a Py4J gateway on loopback (a fresh secret, passed in the environment) and starts
 * {@code python -m aiquery.spark.companion}, which attaches to this JVM's own SparkContext as
 * PySpark's driver would and registers itself as the {@link Analyzer}. From then on aiquery's
 * driver side runs there, exactly as under a PySpark application: endpoint resolution, the
 * embedded emulator, the usage committer (one Delta MERGE per flush, in this JVM's session)
 * and the coordinator that collects executors' usage and holds job-wide rate limits.
 *
 * <p>At JVM exit, before the SQL shell or server stops its SparkContext, the companion closes:
 * the coordinator's files are closed and every spooled record is committed. If this JVM dies
 * without running its hooks, the companion sees its stdin close and exits; the spool stays for
 * the next driver to commit, as after a Python driver's crash.
 */
final class PythonCompanion {
  private static final long START_TIMEOUT_S = 120;
  private static final long CLOSE_TIMEOUT_S = 120;
  /**
   * A Hadoop shutdown hook, run before the one Spark runs all its own hooks in (the SQL
   * shell's, the servers', the SparkContext's: {@code FileSystem.SHUTDOWN_HOOK_PRIORITY + 30})
   * and before file systems close. Its own timeout: Spark's hooks share Hadoop's default 30
   * s, shorter than a first MERGE into a table on object storage from a cluster.
   */
  private static final int SHUTDOWN_PRIORITY = FileSystem.SHUTDOWN_HOOK_PRIORITY + 40;

  private static final Object LOCK = new Object();
  private static PythonCompanion started;

  private final Process process;
  private final py4j.ClientServer gateway;
  private final String python;

  private PythonCompanion(Process process, py4j.ClientServer gateway, String python) {
    this.process = process;
    this.gateway = gateway;
    this.python = python;
  }

  /** The companion's analyzer, starting the companion if this JVM has none yet. */
  static Analyzer analyzer() {
    synchronized (LOCK) {
      Analyzer ready = PythonAnalysis.current();
      if (ready != null) return ready;
      if (started == null || !started.process.isAlive()) started = start();
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(START_TIMEOUT_S);
      while ((ready = PythonAnalysis.current()) == null) {
        if (!started.process.isAlive()) {
          AiQueryFunction.fail(
              "[AIQUERY_CONFIG_ERROR] ai_query's Python companion ("
                  + started.python
                  + " -m aiquery.spark.companion) exited with status "
                  + started.process.exitValue()
                  + " before attaching to this JVM (its error is in this process's stderr); "
                  + "set spark.pyspark.driver.python (or PYSPARK_DRIVER_PYTHON) to a Python "
                  + "with aiquery and the same PySpark version installed. SQLSTATE: 42000");
        }
        long left = deadline - System.nanoTime();
        if (left <= 0) {
          AiQueryFunction.fail(
              "[AIQUERY_CONFIG_ERROR] ai_query's Python companion did not attach to this JVM "
                  + "within "
                  + START_TIMEOUT_S
                  + " s. SQLSTATE: 42000");
        }
        try {
          LOCK.wait(Math.max(1, Math.min(TimeUnit.NANOSECONDS.toMillis(left), 500)));
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IllegalStateException("interrupted while ai_query's companion started", e);
        }
      }
      return ready;
    }
  }

  /** Called when a Python driver registers its analyzer: wakes any call waiting for it. */
  static void attached() {
    synchronized (LOCK) {
      LOCK.notifyAll();
    }
  }

  private static PythonCompanion start() {
    byte[] random = new byte[32];
    new SecureRandom().nextBytes(random);
    String secret = HexFormat.of().formatHex(random);
    InetAddress loopback = InetAddress.getLoopbackAddress();
    // Pinned threads, as PySpark's own driver: each Python thread has its JVM thread, so the
    // active session a Python thread sets is the one its statements see.
    py4j.ClientServer gateway =
        new py4j.ClientServer.ClientServerBuilder()
            .authToken(secret)
            .javaPort(0)
            .javaAddress(loopback)
            .pythonAddress(loopback)
            .build();
    gateway.startServer();
    String python = PythonAnalysis.driverPython();
    ProcessBuilder builder =
        new ProcessBuilder(python, "-m", "aiquery.spark.companion")
            // stdout is the SQL shell's result output: the companion writes to stderr only.
            .redirectOutput(ProcessBuilder.Redirect.DISCARD)
            .redirectError(ProcessBuilder.Redirect.INHERIT);
    Map<String, String> env = builder.environment();
    env.put("PYSPARK_GATEWAY_PORT", Integer.toString(gateway.getJavaServer().getListeningPort()));
    env.put("PYSPARK_GATEWAY_SECRET", secret);
    env.put("PYSPARK_PIN_THREAD", "true");
    Process process;
    try {
      process = builder.start();
    } catch (IOException e) {
      gateway.shutdown();
      AiQueryFunction.fail(
          "[AIQUERY_CONFIG_ERROR] ai_query needs aiquery's Python package on the driver, and "
              + "could not start "
              + python
              + " ("
              + e.getMessage()
              + "); set spark.pyspark.driver.python (or PYSPARK_DRIVER_PYTHON) to a Python "
              + "with aiquery installed. SQLSTATE: 42000");
      throw new IllegalStateException(e);
    }
    PythonCompanion companion = new PythonCompanion(process, gateway, python);
    ShutdownHookManager.get()
        .addShutdownHook(
            companion::close, SHUTDOWN_PRIORITY, CLOSE_TIMEOUT_S + 15, TimeUnit.SECONDS);
    return companion;
  }

  /** Close the companion: its usage committed, its coordinator's files closed, then it exits. */
  private void close() {
    try {
      if (process.isAlive()) {
        // Closing stdin asks the companion to stop: it runs what a Python driver runs at exit
        // (the coordinator's files closed, the last usage flush) and exits.
        process.getOutputStream().close();
        if (!process.waitFor(CLOSE_TIMEOUT_S, TimeUnit.SECONDS)) {
          System.err.println(
              "aiquery: the Python companion did not finish its last usage flush in "
                  + CLOSE_TIMEOUT_S
                  + " s; what it had not committed stays spooled for the next driver");
          process.destroyForcibly();
        }
      }
    } catch (IOException | InterruptedException e) {
      process.destroyForcibly();
    } finally {
      gateway.shutdown();
    }
  }
}
