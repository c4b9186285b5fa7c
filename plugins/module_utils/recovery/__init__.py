# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The recovery core of ec2spot.autorecover.

Pure Python on boto3, with no Ansible imports, so that one copy of the AWS logic
serves both front doors: the collection's modules (``spot_backup``,
``volume_reattach``, ``eip_failover``) and the interruption handler that runs as a
Lambda function. Modules under this package:

``errors``     the one family of exceptions every core function raises
``aws``        clients with botocore's retry configuration, pagination, polling
``tags``       tag keys of a lineage and helpers to read and write them
``lineage``    a service's data across volumes and snapshots, and its generations
``fence``      the rules that decide whether a volume may leave an instance
``instances``  describing, starting and waiting for instances
``volumes``    moving a lineage's volume to a target instance (same AZ or restore)
``backups``    consistent multi-volume snapshots and AMIs of instances
``retention``  which backup sets a retention policy expires, and pruning them
``addresses``  finding Elastic IPs and moving them to a target
``standby``    failing a primary over to its standby instance (address, fenced data)
``watchdog``   the CPU watchdog: reboots within a cooldown and a cap, the SSM restart
"""
