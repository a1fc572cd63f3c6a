"""Managed Service for Apache Flink (kinesisanalyticsv2) for the local endpoint.

The API lives in :mod:`.api` (:class:`KinesisAnalyticsHandler`); this package holds
its parts: application records and their persistence (:mod:`.store`), their configuration and response shapes
(:mod:`.descriptions`), each application's current run and
its survival across companion restarts (:mod:`.runs`), one run of an application (:mod:`.runtime`) and the
start-time checks that plan it (:mod:`.plan`), the spool of Kinesis records the local Flink job reads
(:mod:`.spool`, :mod:`.bridge`), the upload of the job's committed output files to S3 (:mod:`.uploader`) and
the adapter to the sessions job runner (:mod:`.jobs`).
"""
