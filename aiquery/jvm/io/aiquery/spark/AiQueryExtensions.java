package io.aiquery.spark;

import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.rules.Rule;
import org.apache.spark.sql.catalyst.analysis.FunctionRegistry;
import org.apache.spark.sql.catalyst.FunctionIdentifier;
import org.apache.spark.sql.catalyst.expressions.ExpressionInfo;
import scala.Tuple3;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/**
 * {@code spark.sql.extensions=io.aiquery.spark.AiQueryExtensions}: makes {@code ai_query} (and
 * Databricks' task AI functions, {@link AiFunction}) functions of every session, with Databricks' signature (positional and named arguments),
 * in every Spark SQL entry point. Execution stays in aiquery's Python engine: the function
 * plans a Python UDF (see {@link AiQueryFunction}).
 */
public final class AiQueryExtensions extends AbstractFunction1<SparkSessionExtensions, BoxedUnit> {
  @Override
  public BoxedUnit apply(SparkSessionExtensions extensions) {
    ExpressionInfo info =
        new ExpressionInfo(
            AiQueryFunction.class.getName(),
            null,
            "ai_query",
            "ai_query(endpoint, request[, returnType[, failOnError]][, modelParameters => "
                + "named_struct(...)][, responseFormat => '...']) - Calls a model serving "
                + "endpoint for each row.",
            "");
    FunctionIdentifier name = FunctionIdentifier.apply("ai_query");
    AiQueryFunction builder = new AiQueryFunction();
    extensions.injectFunction(new Tuple3<>(name, info, builder));
    // Spark counts a session's injected functions as temporary, and a persistent view or SQL
    // function may not reference a temporary one (INVALID_TEMP_OBJ_REFERENCE). Registered
    // among the built-ins too (this JVM's), ai_query is a function those may use, as on
    // Databricks; any application that reads them needs the extension as well.
    FunctionRegistry.builtin().registerFunction(name, info, builder);
    for (String function : AiFunction.NAMES) {
      FunctionIdentifier id = FunctionIdentifier.apply(function);
      ExpressionInfo about =
          new ExpressionInfo(
              AiFunction.class.getName(), null, function, function + " - Databricks' AI function, "
                  + "run by aiquery's engine.", "");
      AiFunction build = new AiFunction(function);
      extensions.injectFunction(new Tuple3<>(id, about, build));
      FunctionRegistry.builtin().registerFunction(id, about, build);
    }
    extensions.injectOptimizerRule(
        new AbstractFunction1<SparkSession, Rule<LogicalPlan>>() {
          @Override
          public Rule<LogicalPlan> apply(SparkSession session) {
            return new BindAiQuery();
          }
        });
    return BoxedUnit.UNIT;
  }
}
