package io.aiquery.spark;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.util.Map;
import org.apache.spark.SparkEnv;
import org.apache.spark.sql.internal.SQLConf;
import scala.jdk.javaapi.CollectionConverters;

/**
 * A call's arguments checked, and its endpoint resolved and bound, by aiquery's own analysis
 * in Python ({@code aiquery.spark.extension.analyze_in_driver}): the same checks, error
 * classes and endpoint resolution as the DataFrame API, with no second implementation in the
 * JVM. It runs in the driver's Python: the application's, when it registered one ({@link
 * #useDriver}), else a {@link PythonCompanion} this JVM starts on the first call.
 */
public final class PythonAnalysis {
  static final ObjectMapper JSON = new ObjectMapper();
  private static volatile Analyzer driver;

  private PythonAnalysis() {}

  /** Analyse in this Python driver from now on. */
  public static void useDriver(Analyzer analyzer) {
    driver = analyzer;
    PythonCompanion.attached();
  }

  /** The Python analysis in use, if any has started (null: none yet). */
  static Analyzer current() {
    return driver;
  }

  /** {"type": result type JSON, "spec": the call's spec, unbound} or an AnalysisException. */
  static JsonNode analyze(ObjectNode call) {
    withSettings(call);
    return answer(analyzer().analyze(call.toString()));
  }

  /** {"spec": the call's spec, bound for execution} or an AnalysisException. */
  static JsonNode bind(String spec) {
    ObjectNode call = JSON.createObjectNode();
    call.put("spec", spec);
    withSettings(call);
    return answer(analyzer().bind(call.toString()));
  }

  /** The calling session's aiquery settings: a Thrift client may SET its own. */
  private static void withSettings(ObjectNode call) {
    ObjectNode settings = call.putObject("conf");
    SQLConf conf = SQLConf.get();
    for (Map.Entry<String, String> e : CollectionConverters.asJava(conf.getAllConfs()).entrySet()) {
      String key = e.getKey();
      if (key.startsWith("aiquery.") || key.startsWith("spark.aiquery.")) {
        settings.put(key, e.getValue());
      }
    }
  }

  private static Analyzer analyzer() {
    Analyzer analyzer = driver;
    return analyzer != null ? analyzer : PythonCompanion.analyzer();
  }

  private static JsonNode answer(String text) {
    JsonNode answer;
    try {
      answer = JSON.readTree(text);
    } catch (IOException e) {
      throw new IllegalStateException("aiquery's Python analysis answered no JSON", e);
    }
    if (!answer.path("ok").asBoolean()) AiQueryFunction.fail(answer.path("message").asText());
    return answer;
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
