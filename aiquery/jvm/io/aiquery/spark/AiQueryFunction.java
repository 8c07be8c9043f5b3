package io.aiquery.spark;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import org.apache.spark.sql.AnalysisException;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.Literal;
import org.apache.spark.sql.catalyst.expressions.NamedArgumentExpression;
import org.apache.spark.sql.catalyst.expressions.StructsToJson;
import org.apache.spark.sql.catalyst.plans.logical.FunctionSignature;
import org.apache.spark.sql.catalyst.plans.logical.InputParameter;
import org.apache.spark.sql.catalyst.plans.logical.NamedParametersSupport;
import org.apache.spark.sql.internal.SQLConf;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import scala.Option;
import scala.collection.immutable.Seq;
import scala.jdk.javaapi.CollectionConverters;
import scala.runtime.AbstractFunction1;

/**
 * The builder of {@code ai_query}: Databricks' signature with positional and named arguments
 * (Spark's own {@link NamedParametersSupport}, so misuse gets Spark's error classes), the
 * older key/value form, then aiquery's analysis ({@link PythonAnalysis}) for everything else.
 * The result is a {@link PythonCall}: a nondeterministic Arrow Python UDF of the call's result
 * type whose arguments are the request (and the files); the endpoint and settings travel in its
 * pickled command.
 */
public final class AiQueryFunction extends AbstractFunction1<Seq<Expression>, Expression>
    implements Serializable {
  private static final long serialVersionUID = 1L;
  private static final List<String> PARAMETERS =
      List.of(
          "endpoint",
          "request",
          "returnType",
          "failOnError",
          "modelParameters",
          "responseFormat",
          "files");
  private static final Set<String> LEGACY_KEYS =
      Set.of("returntype", "failonerror", "modelparameters", "responseformat", "files");
  private static final FunctionSignature SIGNATURE =
      new FunctionSignature(
          CollectionConverters.asScala(
                  Arrays.asList(
                      new InputParameter("endpoint", Option.empty()),
                      new InputParameter("request", Option.empty()),
                      new InputParameter("returnType", Option.apply(nullString())),
                      new InputParameter(
                          "failOnError", Option.apply(Literal.create(true, DataTypes.BooleanType))),
                      new InputParameter("modelParameters", Option.apply(nullString())),
                      new InputParameter("responseFormat", Option.apply(nullString())),
                      new InputParameter("files", Option.apply(nullString()))))
              .toSeq());

  @Override
  public Expression apply(Seq<Expression> given) {
    List<Expression> args =
        CollectionConverters.asJava(
            NamedParametersSupport.defaultRearrange(
                SIGNATURE, legacyToNamed(given), "ai_query", SQLConf.get().resolver()));
    Expression request = args.get(1);
    ObjectNode call = PythonAnalysis.JSON.createObjectNode();
    call.put("endpoint", constantString(args.get(0), "endpoint", true));
    call.put("returnType", constantString(args.get(2), "returnType", false));
    Object failOnError = constant(args.get(3), "failOnError");
    if (!(failOnError instanceof Boolean)) {
      fail(
          "[AI_FUNCTION_INVALID_ARGUMENT] ai_query's failOnError must be true or false. "
              + "SQLSTATE: 22023");
    }
    call.put("failOnError", (Boolean) failOnError);
    call.put("modelParameters", modelParameters(args.get(4)));
    call.put("responseFormat", constantString(args.get(5), "responseFormat", false));
    call.put("requestType", request.dataType().json());
    List<Expression> children = new ArrayList<>(List.of(request));
    Expression files = args.get(6);
    if (!(files.foldable() && files.eval(null) == null)) {
      call.put("filesType", files.dataType().json());
      children.add(files);
    }
    return PythonCall.udf("ai_query", PythonAnalysis.analyze(call), children);
  }

  /** {@code ai_query(ep, request, 'returnType', 'STRING', 'failOnError', false)} as named. */
  private static Seq<Expression> legacyToNamed(Seq<Expression> given) {
    List<Expression> args = CollectionConverters.asJava(given);
    if (args.size() < 4 || args.size() % 2 != 0 || !isLegacyKey(args.get(2))) return given;
    List<Expression> named = new ArrayList<>(args.subList(0, 2));
    for (int i = 2; i < args.size(); i += 2) {
      if (!isLegacyKey(args.get(i))) {
        fail(
            "[AI_FUNCTION_INVALID_ARGUMENT] ai_query's key/value arguments must alternate a "
                + "parameter name and its value; write them as named arguments instead, e.g. "
                + "ai_query(ep, request, returnType => 'STRING', failOnError => false). "
                + "SQLSTATE: 22023");
      }
      String key = args.get(i).eval(null).toString();
      String canonical =
          PARAMETERS.stream().filter(p -> p.equalsIgnoreCase(key)).findFirst().orElse(key);
      named.add(new NamedArgumentExpression(canonical, args.get(i + 1)));
    }
    return CollectionConverters.asScala(named).toSeq();
  }

  private static boolean isLegacyKey(Expression e) {
    if (!e.foldable() || !e.dataType().equals(DataTypes.StringType)) return false;
    Object value = e.eval(null);
    return value != null && LEGACY_KEYS.contains(value.toString().toLowerCase(Locale.ROOT));
  }

  private static String modelParameters(Expression e) {
    if (e.foldable() && e.eval(null) == null) return null;
    if (!e.foldable() || !(e.dataType() instanceof StructType)) {
      fail(
          "[AI_FUNCTION_INVALID_MODEL_PARAMETERS.NOT_A_CONSTANT_STRUCT] ai_query's "
              + "modelParameters must be a constant struct, e.g. named_struct('max_tokens', 256, "
              + "'temperature', 0.0). SQLSTATE: 22023");
    }
    String zone = SQLConf.get().sessionLocalTimeZone(); // to_json needs one, for timestamps
    return new StructsToJson(scala.collection.immutable.Map$.MODULE$.empty(), e, Option.apply(zone))
        .eval(null)
        .toString();
  }

  private static Object constant(Expression e, String name) {
    if (!e.foldable()) {
      fail(
          "[AI_FUNCTION_INVALID_ARGUMENT] ai_query's "
              + name
              + " must be a constant, not a column or an expression of one. SQLSTATE: 22023");
    }
    return e.eval(null);
  }

  private static String constantString(Expression e, String name, boolean required) {
    Object value = constant(e, name);
    if (value == null) {
      if (required) {
        fail("[AI_FUNCTION_INVALID_ARGUMENT] ai_query's " + name + " is NULL. SQLSTATE: 22023");
      }
      return null;
    }
    if (!e.dataType().equals(DataTypes.StringType)) {
      fail(
          "[AI_FUNCTION_INVALID_ARGUMENT] ai_query's "
              + name
              + " must be a constant string, not a "
              + e.dataType().simpleString()
              + ". SQLSTATE: 22023");
    }
    return value.toString();
  }

  private static Literal nullString() {
    return Literal.create(null, DataTypes.StringType);
  }

  /**
   * An AnalysisException whose message is aiquery's, which leads with the Databricks error
   * class ({@code [AI_FUNCTION_ENDPOINT_NOT_FOUND] ...}). Spark accepts only the error
   * classes it knows, so it travels as {@code USER_RAISED_EXCEPTION}, Spark's class for an
   * error a routine raises with its own message.
   */
  static void fail(String message) {
    java.util.Map<String, String> parameters = java.util.Map.of("errorMessage", message);
    AiQueryFunction.<RuntimeException>raise(
        new AnalysisException(
            "USER_RAISED_EXCEPTION",
            scala.collection.immutable.Map$.MODULE$.from(
                CollectionConverters.asScala(parameters))));
  }

  @SuppressWarnings("unchecked")
  private static <T extends Throwable> void raise(Throwable error) throws T {
    throw (T) error; // AnalysisException is checked in Java, unchecked in Scala
  }
}
