package io.aiquery.spark;

import java.util.Arrays;
import java.util.Collections;
import java.util.Map;
import java.util.Set;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.analysis.NoSuchNamespaceException;
import org.apache.spark.sql.catalyst.analysis.NoSuchTableException;
import org.apache.spark.sql.connector.catalog.Identifier;
import org.apache.spark.sql.connector.catalog.NamespaceChange;
import org.apache.spark.sql.connector.catalog.SupportsNamespaces;
import org.apache.spark.sql.connector.catalog.Table;
import org.apache.spark.sql.connector.catalog.TableCatalog;
import org.apache.spark.sql.connector.catalog.TableChange;
import org.apache.spark.sql.connector.catalog.TableWritePrivilege;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;

/**
 * {@code spark.sql.catalog.system=io.aiquery.spark.SystemCatalog}: {@code
 * system.ai_gateway.usage} in any Spark SQL, read-only, as on Databricks. The table is the
 * Delta table aiquery's committer writes: {@code spark.sql.catalog.system.usagePath}, else the
 * session's {@code aiquery.usage.location} (or {@code spark.aiquery.usage.location}), else
 * {@code <warehouse>/ai_gateway.db/usage} — the same rule as aiquery's Python side. It is
 * read through the session catalog's own {@code delta.`path`} support (Delta's catalog).
 */
public final class SystemCatalog implements TableCatalog, SupportsNamespaces {
  private static final String[] NAMESPACE = {"ai_gateway"};
  private String name;
  private String usagePath;

  @Override
  public void initialize(String name, CaseInsensitiveStringMap options) {
    this.name = name;
    this.usagePath = options.get("usagePath");
  }

  @Override
  public String name() {
    return name;
  }

  @Override
  public String[] defaultNamespace() {
    return NAMESPACE;
  }

  private static boolean isUsage(Identifier id) {
    return Arrays.equals(id.namespace(), NAMESPACE) && id.name().equalsIgnoreCase("usage");
  }

  private String location(SparkSession spark) {
    if (usagePath != null) return usagePath;
    for (String key : new String[] {"aiquery.usage.location", "spark.aiquery.usage.location"}) {
      String value = spark.conf().get(key, null);
      if (value != null && !value.isEmpty()) return value;
    }
    String warehouse = spark.conf().get("spark.sql.warehouse.dir");
    return warehouse.replaceAll("/+$", "") + "/ai_gateway.db/usage";
  }

  @Override
  public Identifier[] listTables(String[] namespace) throws NoSuchNamespaceException {
    if (!Arrays.equals(namespace, NAMESPACE)) throw new NoSuchNamespaceException(namespace);
    return new Identifier[] {Identifier.of(NAMESPACE, "usage")};
  }

  @Override
  public Table loadTable(Identifier id) throws NoSuchTableException {
    if (!isUsage(id)) throw new NoSuchTableException(id);
    flushUsage();
    SparkSession spark = SparkSession.active();
    TableCatalog session =
        (TableCatalog) spark.sessionState().catalogManager().catalog("spark_catalog");
    return session.loadTable(Identifier.of(new String[] {"delta"}, location(spark)));
  }

  /**
   * Requests this JVM's driver has spooled are committed before a read, so the table a
   * statement reads includes every request that finished before it (the Python driver's or the
   * companion's committer; none has started when this JVM ran no ai_query call).
   */
  private static void flushUsage() {
    Analyzer analyzer = PythonAnalysis.current();
    if (analyzer == null) return;
    try {
      analyzer.flush();
    } catch (RuntimeException e) {
      System.err.println(
          "aiquery: usage not flushed before reading system.ai_gateway.usage (" + e + "); "
              + "the spool is committed by the next flush");
    }
  }

  /** Writes (INSERT, UPDATE, DELETE, MERGE) load their target here: refused. */
  @Override
  public Table loadTable(Identifier id, Set<TableWritePrivilege> privileges) {
    throw readOnly();
  }

  @Override
  public Table alterTable(Identifier id, TableChange... changes) {
    throw readOnly();
  }

  @Override
  public boolean dropTable(Identifier id) {
    throw readOnly();
  }

  @Override
  public void renameTable(Identifier from, Identifier to) {
    throw readOnly();
  }

  @Override
  public String[][] listNamespaces() {
    return new String[][] {NAMESPACE};
  }

  @Override
  public String[][] listNamespaces(String[] namespace) throws NoSuchNamespaceException {
    if (Arrays.equals(namespace, NAMESPACE)) return new String[0][];
    throw new NoSuchNamespaceException(namespace);
  }

  @Override
  public Map<String, String> loadNamespaceMetadata(String[] namespace)
      throws NoSuchNamespaceException {
    if (Arrays.equals(namespace, NAMESPACE)) return Collections.emptyMap();
    throw new NoSuchNamespaceException(namespace);
  }

  @Override
  public void createNamespace(String[] namespace, Map<String, String> metadata) {
    throw readOnly();
  }

  @Override
  public void alterNamespace(String[] namespace, NamespaceChange... changes) {
    throw readOnly();
  }

  @Override
  public boolean dropNamespace(String[] namespace, boolean cascade) {
    throw readOnly();
  }

  private UnsupportedOperationException readOnly() {
    return new UnsupportedOperationException(
        name + ".ai_gateway.usage is read-only: aiquery's usage committer writes it");
  }
}
