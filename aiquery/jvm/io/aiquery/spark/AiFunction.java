package io.aiquery.spark;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.catalyst.expressions.CreateNamedStruct;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.Literal;
import org.apache.spark.sql.catalyst.expressions.NamedArgumentExpression;
import org.apache.spark.sql.catalyst.expressions.StructsToJson;
import org.apache.spark.sql.internal.SQLConf;
import org.apache.spark.sql.types.DataTypes;
import scala.Option;
import scala.collection.immutable.Seq;
import scala.jdk.javaapi.CollectionConverters;
import scala.runtime.AbstractFunction1;

/**
 * The builder of one of Databricks' task AI functions ({@code ai_classify}, {@code
 * ai_extract}, ...). The JVM knows nothing of their signatures: it sends every argument as
 * given (its name when named, its SQL type, and its value when it is a constant) to aiquery's
 * Python analysis ({@code aiquery.spark.aifunctions}), which binds and checks them and answers
 * which arguments are the UDF's inputs; the call is then planned like {@code ai_query}.
 */
public final class AiFunction extends AbstractFunction1<Seq<Expression>, Expression>
    implements Serializable {
  private static final long serialVersionUID = 1L;

  /** The functions this builder serves (aiquery.protocols.tasks.FUNCTIONS). */
  static final List<String> NAMES =
      List.of(
          "ai_analyze_sentiment",
          "ai_classify",
          "ai_extract",
          "ai_fix_grammar",
          "ai_gen",
          "ai_mask",
          "ai_similarity",
          "ai_summarize",
          "ai_translate");

  private final String name;

  AiFunction(String name) {
    this.name = name;
  }

  @Override
  public Expression apply(Seq<Expression> given) {
    List<Expression> args = new ArrayList<>();
    ObjectNode call = PythonAnalysis.JSON.createObjectNode();
    call.put("function", name);
    ArrayNode described = call.putArray("args");
    for (Expression e : CollectionConverters.asJava(given)) {
      ObjectNode arg = described.addObject();
      if (e instanceof NamedArgumentExpression named) {
        arg.put("name", named.key());
        e = named.value();
      }
      args.add(e);
      arg.put("type", e.dataType().json());
      arg.put("constant", e.foldable());
      if (e.foldable()) arg.set("value", constantJson(e));
    }
    JsonNode analysed = PythonAnalysis.analyze(call);
    List<Expression> children = new ArrayList<>();
    for (JsonNode index : analysed.path("inputs")) children.add(args.get(index.asInt()));
    return PythonCall.udf(name, analysed, children);
  }

  /** A constant argument as JSON (strings, numbers, arrays, maps), via Spark's own to_json. */
  private static JsonNode constantJson(Expression e) {
    Expression wrapped =
        new CreateNamedStruct(CollectionConverters.asScala(List.of(Literal.create("v", DataTypes.StringType), e)).toSeq());
    String zone = SQLConf.get().sessionLocalTimeZone();
    Object json =
        new StructsToJson(scala.collection.immutable.Map$.MODULE$.empty(), wrapped, Option.apply(zone))
            .eval(null);
    try {
      JsonNode value = PythonAnalysis.JSON.readTree(json.toString()).get("v");
      return value != null ? value : NullNode.getInstance(); // to_json drops a NULL field
    } catch (IOException error) {
      throw new IllegalStateException("to_json answered no JSON", error);
    }
  }
}
