"""Cloud Foundry's VCAP_SERVICES, shaped like GOV.UK PaaS's brokers' credentials."""

import json

AWKWARD = 'p@ss/w%rd:#?'


POSTGRES = {
    'name': 'data-flow-db', 'label': 'postgres', 'plan': 'small-13', 'tags': ['postgres', 'relational'],
    'credentials': {
        'host': 'rdsbroker-abc.eu-west-2.rds.amazonaws.com', 'port': 5432, 'name': 'rdsbroker_9f8e',
        'username': 'rdsbroker_9f8e_owner', 'password': AWKWARD,
        'uri': 'postgres://rdsbroker_9f8e_owner:REDACTED@rdsbroker-abc.eu-west-2.rds.amazonaws.com:5432/rdsbroker_9f8e',
        'jdbcuri': 'jdbc:postgresql://rdsbroker-abc.eu-west-2.rds.amazonaws.com:5432/rdsbroker_9f8e',
    },
}
REDIS = {
    'name': 'data-flow-redis', 'label': 'redis', 'plan': 'tiny-ha-6.x', 'tags': ['elasticache', 'redis'],
    'credentials': {
        'host': 'master.cf-abc.cache.amazonaws.com', 'port': 6379, 'name': 'cf-abc', 'password': 'r3d/s@%',
        'tls_enabled': True, 'uri': 'rediss://x:REDACTED@master.cf-abc.cache.amazonaws.com:6379',
    },
}
S3 = {
    'name': 'data-flow-logs', 'label': 'aws-s3-bucket', 'plan': 'default',
    'credentials': {'bucket_name': 'paas-s3-broker-prod-lon-1234', 'aws_access_key_id': 'AKIAEXAMPLE',
                    'aws_secret_access_key': 'se/cr+et=', 'aws_region': 'eu-west-2', 'deploy_env': ''},
}


def services(*entries):
    payload = {}
    for entry in entries:
        payload.setdefault(entry['label'], []).append(entry)
    return json.dumps(payload)
