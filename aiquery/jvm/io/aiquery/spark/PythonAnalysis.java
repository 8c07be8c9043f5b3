package io.aiquery.spark;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.apache.spark.SparkEnv;
import org.apache.spark.sql.internal.SQLConf;
import scala.jdk.javaapi.CollectionConverters;

/**
 * A call's arguments checked, and its endpoint resolved, by aiquery's own analysis in Python
 * ({@code python -m aiquery.spark.extension analyze}): the same checks, error classes and
 * endpoint resolution as {@code aiquery.sql}, with no second implementation in the JVM. It
 * runs where the statement is analysed (the driver), also when no Python driver exists (the
 * {@code spark-sql} shell, the Thrift server). Answers are cached per call and settings, so
 * a statement analysed again does not start Python again.
 */
public final class PythonAnalysis {
  static final ObjectMapper JSON = new ObjectMapper();
  private static volatile Analyzer driver;
  private static final Map<String, JsonNode> CACHE = new ConcurrentHashMap<>();
  private static final long TIMEOUT_S = 120;

  private PythonAnalysis() {}

  /** Analyse in the Python driver from now on (null: in a Python process per call). */
  public static void useDriver(Analyzer analyzer) {
    driver = analyzer;
    CACHE.clear();
  }

  /** {"type": result type JSON, "spec": the executors' call spec} or an AnalysisException. */
  static JsonNode analyze(ObjectNode call) {
    ObjectNode settings = call.putObject("conf");
    SQLConf conf = SQLConf.get();
    for (Map.Entry<String, String> e : CollectionConverters.asJava(conf.getAllConfs()).entrySet()) {
      String key = e.getKey();
      if (key.startsWith("aiquery.") || key.startsWith("spark.aiquery.") || RELEVANT.contains(key)) {
        settings.put(key, e.getValue());
      }
    }
    SparkEnv env = SparkEnv.get();
    if (env != null) {
      for (String key : RELEVANT) {
        if (!settings.has(key) && env.conf().contains(key)) settings.put(key, env.conf().get(key));
      }
    }
    String payload = call.toString();
    Analyzer inDriver = driver;
    JsonNode answer;
    if (inDriver != null) {
      // Not cached: binding a call starts what it needs in the driver, once per call.
      try {
        answer = JSON.readTree(inDriver.analyze(payload));
      } catch (IOException e) {
        throw new IllegalStateException("the Python driver's analysis answered no JSON", e);
      }
    } else {
      answer = CACHE.get(payload);
      if (answer == null) {
        answer = run(payload);
        if (answer.path("ok").asBoolean()) CACHE.put(payload, answer);
      }
    }
    if (!answer.path("ok").asBoolean()) AiQueryFunction.fail(answer.path("message").asText());
    return answer;
  }

  private static final java.util.Set<String> RELEVANT =
      java.util.Set.of(
          "spark.master",
          "spark.app.id",
          "spark.sql.warehouse.dir",
          "spark.default.parallelism",
          "spark.driver.host");

  private static JsonNode run(String payload) {
    String python = driverPython();
    Process process;
    try {
      process =
          new ProcessBuilder(python, "-m", "aiquery.spark.extension", "analyze")
              .redirectError(ProcessBuilder.Redirect.INHERIT)
              .start();
    } catch (IOException e) {
      AiQueryFunction.fail(
          "[AIQUERY_CONFIG_ERROR] ai_query needs aiquery's Python package on the driver to "
              + "analyse a call, and could not start "
              + python
              + " ("
              + e.getMessage()
              + "); set spark.pyspark.driver.python (or PYSPARK_DRIVER_PYTHON) to a Python "
              + "with aiquery installed. SQLSTATE: 42000");
      throw new IllegalStateException(e);
    }
    try (OutputStream in = process.getOutputStream()) {
      in.write(payload.getBytes(StandardCharsets.UTF_8));
    } catch (IOException e) {
      // The process died before reading: its exit status and output say why, below.
    }
    byte[] output;
    try (InputStream out = process.getInputStream()) {
      ByteArrayOutputStream buffer = new ByteArrayOutputStream();
      out.transferTo(buffer);
      output = buffer.toByteArray();
      if (!process.waitFor(TIMEOUT_S, TimeUnit.SECONDS)) process.destroyForcibly();
    } catch (IOException | InterruptedException e) {
      process.destroyForcibly();
      throw new IllegalStateException("aiquery's analysis did not answer", e);
    }
    String text = new String(output, StandardCharsets.UTF_8).trim();
    String last = text.isEmpty() ? "" : text.substring(text.lastIndexOf('\n') + 1);
    try {
      return JSON.readTree(last);
    } catch (IOException e) {
      AiQueryFunction.fail(
          "[AIQUERY_CONFIG_ERROR] "
              + python
              + " -m aiquery.spark.extension did not answer (exit "
              + process.exitValue()
              + "); is aiquery installed for that Python? SQLSTATE: 42000");
      throw new IllegalStateException(e);
    }
  }

  /** The Python that analyses on the driver, as PySpark chooses it. */
  static String driverPython() {
    return setting(
        "spark.pyspark.driver.python",
        "PYSPARK_DRIVER_PYTHON",
        setting("spark.pyspark.python", "PYSPARK_PYTHON", "python3"));
  }

  /** The Python that executors run, as PySpark chooses it. */
  static String executorPython() {
    return setting("spark.pyspark.python", "PYSPARK_PYTHON", "python3");
  }

  private static String setting(String key, String variable, String fallback) {
    SparkEnv env = SparkEnv.get();
    if (env != null && env.conf().contains(key)) return env.conf().get(key);
    String value = System.getenv(variable);
    return value != null && !value.isEmpty() ? value : fallback;
  }
}
