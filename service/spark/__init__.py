"""Scoring inside Apache Spark, as Fink runs its science modules (the ``spark`` extra):
:mod:`service.spark.anomaly_detection` is laid out as a fink-science module - ``processor.py``
holds the pandas UDF and the module function over a DataFrame, ``utilities.py`` what they run
(the service's processor, without Spark)."""
