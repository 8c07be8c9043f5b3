package io.aiquery.spark;

import java.util.HashMap;
import java.util.Map;
import org.apache.spark.sql.catalyst.expressions.ExprId;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.PythonUDF;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.rules.Rule;
import scala.runtime.AbstractPartialFunction;

/**
 * Binds each {@code ai_query} call for execution: an optimizer rule, so it runs when a
 * statement is about to run (or be explained), never when it is only analysed (a view's
 * definition, a DataFrame not yet collected, a statement with a bad call elsewhere). Binding
 * is aiquery's Python {@code runtime.bind}: the embedded emulator, the usage committer, the
 * coordinator, in the driver's Python; idempotent there.
 *
 * <p>A call may appear several times in one expression (an embedding's unpacking reads it
 * more than once, see {@link Vectors}); every occurrence becomes the same bound UDF, so Spark
 * still runs the call once.
 */
public final class BindAiQuery extends Rule<LogicalPlan> {
  @Override
  public LogicalPlan apply(LogicalPlan plan) {
    Map<ExprId, Expression> bound = new HashMap<>();
    return plan.transformAllExpressionsWithSubqueries(
        new AbstractPartialFunction<Expression, Expression>() {
          @Override
          public boolean isDefinedAt(Expression e) {
            return e instanceof PythonUDF udf && PythonCall.unboundSpec(udf) != null;
          }

          @Override
          public Expression apply(Expression e) {
            PythonUDF call = (PythonUDF) e;
            return bound.computeIfAbsent(call.resultId(), id -> PythonCall.bind(call));
          }
        });
  }
}
