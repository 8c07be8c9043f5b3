package io.aiquery.spark;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.spark.api.python.PythonEvalType;
import org.apache.spark.api.python.SimplePythonFunction;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.NamedExpression;
import org.apache.spark.sql.catalyst.expressions.PythonUDF;
import org.apache.spark.sql.catalyst.expressions.variant.ParseJson;
import org.apache.spark.sql.types.DataType;
import scala.jdk.javaapi.CollectionConverters;

/**
 * An analysed call ({@code ai_query} or an AI function) as the expression Spark plans: a
 * nondeterministic Arrow Python UDF named for the function, of the call's result type, over
 * the arguments the analysis chose (the request, the files, the texts). Its command is a
 * pickle of {@code aiquery.spark.extension.udf_for(spec)}, so executors run aiquery's one
 * engine. A VARIANT result travels as JSON text and is parsed by Spark's own {@code
 * parse_json}; embeddings travel packed and are unpacked by {@link Vectors}.
 */
final class PythonCall {
  /** Where an unbound call keeps its analysed spec (never passed to a worker: binding drops it). */
  static final String UNBOUND_SPEC = "AIQUERY_UNBOUND_SPEC";

  private static volatile String executorPythonVersion;

  private PythonCall() {}

  /** The planned call, unbound: analysis starts nothing (see {@link BindAiQuery}). */
  static Expression udf(String name, JsonNode analysed, List<Expression> children) {
    DataType resultType = DataType.fromJson(analysed.path("type").asText());
    // What the worker hands back, when not the result type itself: embeddings packed.
    DataType workerType =
        analysed.hasNonNull("workerType")
            ? DataType.fromJson(analysed.path("workerType").asText())
            : resultType;
    Map<String, String> unbound = new HashMap<>();
    unbound.put(UNBOUND_SPEC, analysed.path("spec").asText());
    Expression call =
        new PythonUDF(
            name,
            function(analysed.path("spec").asText(), workerType, unbound),
            workerType,
            CollectionConverters.asScala(children).toSeq(),
            PythonEvalType.SQL_SCALAR_ARROW_ITER_UDF(),
            false, // nondeterministic: Spark must never run a call twice to collapse projections
            NamedExpression.newExprId());
    call = Vectors.unpack(call, workerType, resultType);
    return analysed.path("variant").asBoolean() ? new ParseJson(call, true) : call;
  }

  /** The unbound spec of a call planned by this extension, else null. */
  static String unboundSpec(PythonUDF udf) {
    return udf.func() instanceof SimplePythonFunction f ? f.envVars().get(UNBOUND_SPEC) : null;
  }

  /** The call bound for execution by aiquery's Python driver: the same UDF, its spec bound. */
  static PythonUDF bind(PythonUDF udf) {
    JsonNode bound = PythonAnalysis.bind(unboundSpec(udf));
    return new PythonUDF(
        udf.name(),
        function(bound.path("spec").asText(), udf.dataType(), new HashMap<>()),
        udf.dataType(),
        udf.children(),
        udf.evalType(),
        udf.udfDeterministic(),
        udf.resultId());
  }

  private static SimplePythonFunction function(String spec, DataType type, Map<String, String> env) {
    String python = PythonAnalysis.executorPython();
    return new SimplePythonFunction(
        Pickle.udfCommand(spec, type.json()),
        env,
        new ArrayList<>(),
        python,
        pythonVersion(python),
        new ArrayList<>(),
        null);
  }

  /** The executors' Python major.minor, which PySpark's worker checks against its own. */
  private static String pythonVersion(String python) {
    String known = executorPythonVersion;
    if (known != null) return known;
    try {
      Process process =
          new ProcessBuilder(python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])")
              .start();
      try (BufferedReader out =
          new BufferedReader(
              new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
        known = out.readLine().trim();
      }
      process.waitFor();
    } catch (Exception e) {
      AiQueryFunction.fail(
          "[AIQUERY_CONFIG_ERROR] cannot run the executors' Python, "
              + python
              + " (spark.pyspark.python or PYSPARK_PYTHON). SQLSTATE: 42000");
    }
    executorPythonVersion = known;
    return known;
  }
}
