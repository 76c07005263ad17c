-- Prefect's server keeps its own database beside Gristmill's.
CREATE DATABASE prefect OWNER gristmill;
