package io.aiquery.spark;

/**
 * aiquery's analysis of one bound call (JSON in, JSON out). A Python driver implements it
 * through Py4J's callback server ({@code aiquery.spark.extension.install}), so calls are
 * analysed in the driver's own process: its endpoints ({@code aiquery.configure}, its
 * environment), its usage committer and its coordinator. Without one, a short-lived Python
 * process analyses instead.
 */
public interface Analyzer {
  String analyze(String call);
}
