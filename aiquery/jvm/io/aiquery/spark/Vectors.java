package io.aiquery.spark;

import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.catalyst.expressions.And;
import org.apache.spark.sql.catalyst.expressions.CreateNamedStruct;
import org.apache.spark.sql.catalyst.expressions.EqualTo;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.GetStructField;
import org.apache.spark.sql.catalyst.expressions.GreaterThanOrEqual;
import org.apache.spark.sql.catalyst.expressions.If;
import org.apache.spark.sql.catalyst.expressions.IsNull;
import org.apache.spark.sql.catalyst.expressions.Length;
import org.apache.spark.sql.catalyst.expressions.Literal;
import org.apache.spark.sql.catalyst.expressions.RaiseError;
import org.apache.spark.sql.catalyst.expressions.ShiftRight;
import org.apache.spark.sql.catalyst.expressions.Subtract;
import org.apache.spark.sql.catalyst.expressions.UnsafeArrayData;
import org.apache.spark.sql.catalyst.expressions.objects.StaticInvoke;
import org.apache.spark.sql.types.AbstractDataType;
import org.apache.spark.sql.types.ArrayType;
import org.apache.spark.sql.types.BinaryType;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.DoubleType;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.unsafe.Platform;
import scala.Option;
import scala.jdk.javaapi.CollectionConverters;

/**
 * Embeddings cross from the Python worker as packed BINARY, not as Arrow lists: Spark copies
 * an Arrow list into its rows one checked element at a time (measured: ~60% of workload D's
 * JVM time), a packed vector with one memory copy. The Python side ({@code
 * aiquery.spark.vectors}) chooses which values travel packed and writes them; this side
 * follows the types it was given and turns each packed value back into the {@code
 * ARRAY<FLOAT>} (or {@code ARRAY<DOUBLE>}) the user's plan declares.
 *
 * <p>A packed vector is an 8-byte header, {@link #MAGIC} as a native int and four zero bytes,
 * then the values in native byte order (the worker and its executor share a host). Only
 * Spark's own expressions are planned ({@code UnsafeArrayData.fromPrimitiveArray} through
 * {@code StaticInvoke}), so executors need no class of aiquery's. That call takes a raw offset
 * into the byte array, which is the driver's {@code Platform.BYTE_ARRAY_OFFSET}; each value's
 * header is read at that offset first, so an executor JVM laying out arrays differently (e.g.
 * compact object headers on one side only) fails the statement instead of reading garbage.
 * The element count comes from the value's length, never from its bytes: the copy cannot
 * leave the array.
 */
final class Vectors {
  /** The header's first four bytes ("AQvf" in little-endian order), shared with Python. */
  static final int MAGIC = 0x66765141;

  static final int HEADER = 8;

  private Vectors() {}

  /**
   * {@code call} (of type {@code packed}) as an expression of type {@code declared}: packed
   * vectors unpacked, at the top or as fields of a struct (failOnError => false's error
   * struct); the call itself where the types agree.
   */
  static Expression unpack(Expression call, DataType packed, DataType declared) {
    if (packed.sameType(declared)) return call;
    if (packed instanceof BinaryType && declared instanceof ArrayType array) {
      return vector(call, array);
    }
    if (packed instanceof StructType from && declared instanceof StructType to) {
      List<Expression> fields = new ArrayList<>();
      for (int i = 0; i < to.fields().length; i++) {
        StructField field = to.fields()[i];
        Expression value = new GetStructField(call, i, Option.apply(field.name()));
        fields.add(Literal.create(field.name(), DataTypes.StringType));
        fields.add(unpack(value, from.fields()[i].dataType(), field.dataType()));
      }
      Expression struct = new CreateNamedStruct(CollectionConverters.asScala(fields).toSeq());
      return new If(new IsNull(call), Literal.create(null, to), struct);
    }
    throw new IllegalArgumentException(
        "aiquery: cannot unpack " + packed.simpleString() + " into " + declared.simpleString());
  }

  /** One packed vector: NULL stays NULL; a header that does not match fails the statement. */
  private static Expression vector(Expression bytes, ArrayType type) {
    int size = type.elementType() instanceof DoubleType ? 8 : 4;
    Expression length = new Length(bytes);
    Expression header =
        invoke(
            Platform.class,
            DataTypes.IntegerType,
            "getInt",
            bytes,
            Literal.create((long) Platform.BYTE_ARRAY_OFFSET, DataTypes.LongType));
    Expression valid =
        new And(
            new GreaterThanOrEqual(length, Literal.create(HEADER, DataTypes.IntegerType)),
            new EqualTo(header, Literal.create(MAGIC, DataTypes.IntegerType)));
    Expression values =
        invoke(
            UnsafeArrayData.class,
            type,
            "fromPrimitiveArray",
            bytes,
            Literal.create(Platform.BYTE_ARRAY_OFFSET + HEADER, DataTypes.IntegerType),
            new ShiftRight(
                new Subtract(length, Literal.create(HEADER, DataTypes.IntegerType)),
                Literal.create(size == 8 ? 3 : 2, DataTypes.IntegerType)),
            Literal.create(size, DataTypes.IntegerType));
    RaiseError message =
        new RaiseError(
            Literal.create(
                "[AIQUERY_INTERNAL_ERROR] a packed embedding's header is not where this "
                    + "driver's JVM expects it: give the executors the driver's JVM options "
                    + "(object layout, e.g. -XX:+UseCompactObjectHeaders).",
                DataTypes.StringType));
    Expression fail = new RaiseError(message.errorClass(), message.errorParms(), type);
    return new If(
        new IsNull(bytes), Literal.create(null, type), new If(valid, values, fail));
  }

  private static Expression invoke(
      Class<?> owner, DataType type, String method, Expression... arguments) {
    return new StaticInvoke(
        owner,
        type,
        method,
        CollectionConverters.asScala(List.of(arguments)).toSeq(),
        CollectionConverters.asScala(List.<AbstractDataType>of()).toSeq(),
        true, // propagateNull
        true, // returnNullable
        true, // deterministic
        Option.empty());
  }
}
