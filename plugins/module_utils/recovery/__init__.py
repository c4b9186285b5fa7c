# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The recovery core of ec2spot.autorecover.

Pure Python on boto3, with no Ansible imports, so that one copy of the AWS logic
serves both front doors: the collection's modules and the interruption handler that
runs as a Lambda function (the same files, zipped by ``handler_package``). Every module
and subpackage of this package (``tests/unit/test_package_map.py`` keeps this list complete,
and each subpackage's own map):

``errors``        the one family of exceptions every core function raises
``aws``           clients with botocore's retry configuration, the one translation of botocore's errors, pagination, polling
``tags``          tag keys of a lineage and helpers to read and write them
``generations``   the one rule ranking a lineage's copies and judging a marker (the agent carries a verbatim copy)
``lineage``       a service's data across volumes and snapshots, its generations, its groups
``fence``         the rules that decide whether a volume may leave an instance
``instances``     describing, starting and waiting for instances
``volumes``       moving a lineage's volume to a target instance (same AZ or restore)
``backups``       consistent multi-volume snapshots and AMIs of instances
``retention``     which backups a retention policy keeps, and pruning the rest
``restore_plan``  describing a lineage and resolving which backup a restore means (``lineage_info``)
``standalone``    launching one instance of a lineage from its launch template
``addresses``     finding Elastic IPs and moving them to a target
``standby``       failing a primary over to its standby instance (address, fenced data); telling them apart
``watchdog``      the CPU watchdog: reboots within a cooldown and a cap, the SSM restart
``drill``         the Spot interruption drill (AWS FIS experiment templates)
``commands``      running shell commands on instances through SSM, bounded
``progress``      the steps of a recovery recorded as tags on its instances
``config``        the handler's configuration: one schema, parsed and validated
``events``        the handler's event contract: envelopes, sources, kinds, parsed strictly
``outcomes``      the terminal verdict of a recovery: recovered, or recovered with loss (what was lost)
``handler``       the interruption handler, a package read by event (its docstring maps its modules): the Lambda and
                SQS batch entry point, one module per workflow (warning, launch, termination, rebalance, scheduled
                backup, boot report, planned, sweep, standby, watchdog), notify and metrics, retries
"""
