"""The eval: the harness behind ``rag eval`` (``harness``), the metrics of one answer
(``metrics``), and the report, comparison and gate (``report``)."""
