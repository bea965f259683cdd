-- PostgreSQL init: Airflow's metadata database plus the two maintained databases.
CREATE DATABASE telemetry;
CREATE DATABASE breezeway;
