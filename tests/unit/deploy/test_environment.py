import json

import pytest

from dataflow.deploy import environment
from dataflow.errors import ConfigurationError
from tests.support.settings import use_settings
from tests.support.vcap import POSTGRES, REDIS, S3, services

SECRETS = {'AIRFLOW__CORE__FERNET_KEY': 'f', 'AIRFLOW__API_AUTH__JWT_SECRET': 'j', 'AIRFLOW__API__SECRET_KEY': 's'}
BOUND = {'VCAP_SERVICES': services(POSTGRES, REDIS), 'HOME': '/home/vcap', 'PORT': '8080'}


def test_master_gets_vcap_settings_sso_and_its_port():
    env, warnings = environment.build('master', {**BOUND, **SECRETS, 'VCAP_APPLICATION': json.dumps(
        {'application_name': 'data-flow', 'application_uris': ['data-flow.london.cloudapps.digital']})})
    assert warnings == []
    assert env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'].startswith('postgresql+psycopg2://rdsbroker_9f8e_owner:')
    assert env['AIRFLOW__CELERY__BROKER_URL'].startswith('rediss://')
    assert env['AIRFLOW__API__PORT'] == '8080'
    assert env['AIRFLOW__API__BASE_URL'] == 'https://data-flow.london.cloudapps.digital'
    assert env['AIRFLOW__CORE__EXECUTION_API_SERVER_URL'] == 'http://127.0.0.1:8080/execution/'
    assert env['AIRFLOW__CORE__AUTH_MANAGER'].endswith('FabAuthManager')
    assert env['AIRFLOW__FAB__ENABLE_PROXY_FIX'] == 'True'
    assert env['AIRFLOW_HOME'] == '/home/vcap/airflow'


def test_explicit_settings_win_over_vcap():
    explicit = 'postgresql://me@elsewhere/datasets'
    env, _ = environment.build('master', {**BOUND, **SECRETS, 'AIRFLOW_CONN_DATASETS_DB': explicit})
    assert env['AIRFLOW_CONN_DATASETS_DB'] == explicit


def test_master_without_shared_secrets_refuses_to_start_naming_them():
    with pytest.raises(ConfigurationError) as error:
        environment.build('master', BOUND)
    message = str(error.value)
    for name in SECRETS:
        assert f'{name}: every component must share it' in message


def test_debug_lets_a_master_start_without_shared_secrets():
    # DEBUG of the environment being built: the one reading of it (dataflow.settings).
    assert environment.build('master', {**BOUND, 'DEBUG': 'true'})[0]['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']


def test_airflow_2_names_keep_working_with_a_warning():
    env, warnings = environment.build('master', {
        **SECRETS, 'VCAP_SERVICES': services(REDIS), 'HOME': '/h', 'AIRFLOW_CONN_DATASETS_DB': 'postgresql://x/d',
        'AIRFLOW__CELERY__RESULT_BACKEND': 'db+postgresql://x/m',
        'AIRFLOW__CORE__SQL_ALCHEMY_CONN': 'postgresql+psycopg2://x/m', 'AIRFLOW__WEBSERVER__SECRET_KEY': 's',
    })
    assert env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'] == 'postgresql+psycopg2://x/m'
    assert 'AIRFLOW__CORE__SQL_ALCHEMY_CONN' not in env
    assert warnings == ['AIRFLOW__CORE__SQL_ALCHEMY_CONN is from Airflow 2: use AIRFLOW__DATABASE__SQL_ALCHEMY_CONN',
                        'AIRFLOW__WEBSERVER__SECRET_KEY is from Airflow 2: use AIRFLOW__API__SECRET_KEY']


@pytest.mark.parametrize('name, message', [
    ('AIRFLOW__WEBSERVER__WEB_SERVER_PORT', 'the api-server listens on PORT'),
    ('AIRFLOW__WEBSERVER__AUTHENTICATE', 'set SSO_PROVIDER and AUTHBROKER_'),
])
def test_airflow_2_names_without_a_replacement_are_refused_naming_what_to_use(name, message):
    with pytest.raises(ConfigurationError, match=f'{name} is not used by Airflow 3: ') as error:
        environment.build('master', {**BOUND, **SECRETS, name: 'x'})
    assert message in str(error.value)


def test_old_and_new_names_that_disagree_are_refused():
    with pytest.raises(ConfigurationError, match='both set and differ'):
        environment.build('master', {**BOUND, **SECRETS, 'AIRFLOW__CORE__SQL_ALCHEMY_CONN': 'a',
                                     'AIRFLOW__DATABASE__SQL_ALCHEMY_CONN': 'b'})


def test_a_worker_gets_what_it_needs_and_not_the_masters_secrets():
    env, _ = environment.build('worker', {**BOUND, **SECRETS, 'VCAP_SERVICES': services(POSTGRES, REDIS, S3),
                                          'DATAFLOW_MASTER_URL': 'http://data-flow.apps.internal:8080/',
                                          'HAWK_ID': 'id', 'AIRFLOW__CELERY__WORKER_CONCURRENCY': '4'})
    assert env['AIRFLOW__CORE__EXECUTION_API_SERVER_URL'] == 'http://data-flow.apps.internal:8080/execution/'
    assert env['AIRFLOW__CELERY__BROKER_URL'].startswith('rediss://')
    assert env['AIRFLOW__CELERY__RESULT_BACKEND'].startswith('db+postgresql://')
    assert env['AIRFLOW_CONN_DATASETS_DB'].startswith('postgresql://')
    assert env['AIRFLOW__LOGGING__REMOTE_LOGGING'] == 'True'
    assert (env['HAWK_ID'], env['AIRFLOW__CELERY__WORKER_CONCURRENCY']) == ('id', '4')
    for kept_off in ('AIRFLOW__DATABASE__SQL_ALCHEMY_CONN', *SECRETS, 'AIRFLOW__CORE__AUTH_MANAGER'):
        assert kept_off not in env


def test_a_worker_without_the_master_url_says_how_to_set_it():
    with pytest.raises(ConfigurationError, match='set DATAFLOW_MASTER_URL to the master'):
        environment.build('worker', BOUND)


def test_instances_are_named_by_app_and_index(monkeypatch):
    use_settings(monkeypatch, vcap_application=json.dumps({'application_name': 'data-flow-worker'}),
                 cf_instance_index='1')
    assert environment.hostname() == 'data-flow-worker-1'
    use_settings(monkeypatch, cf_instance_index='')
    assert environment.hostname() != 'data-flow-worker-'


def test_local_mode_needs_debug():
    with pytest.raises(ConfigurationError, match='SSO_PROVIDER=local lets anyone in as an admin.*needs DEBUG=true'):
        environment.build('master', {**BOUND, **SECRETS, 'SSO_PROVIDER': 'local'})
    env, _ = environment.build('master', {**BOUND, **SECRETS, 'SSO_PROVIDER': 'local', 'DEBUG': 'true'})
    assert env['AIRFLOW__CORE__AUTH_MANAGER'].endswith('SimpleAuthManager')
    assert 'AIRFLOW__FAB__CONFIG_FILE' not in env


def test_every_process_gets_the_recovery_settings_unless_the_environment_sets_its_own():
    master, _ = environment.build('master', {**BOUND, **SECRETS, 'AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT': '300'})
    worker, _ = environment.build('worker', {**BOUND, 'DATAFLOW_MASTER_URL': 'http://master.apps.internal:8080'})
    assert master['AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT'] == '60'
    assert master['AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT'] == '300'
    assert master['AIRFLOW__WORKERS__EXECUTION_API_RETRIES'] == '15'
    # A worker's task supervisor heartbeats and calls the api-server by these.
    assert {name: worker.get(name) for name in (
        'AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT', 'AIRFLOW__WORKERS__EXECUTION_API_RETRIES',
        'AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX', 'AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT')} == {
        'AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT': '60', 'AIRFLOW__WORKERS__EXECUTION_API_RETRIES': '15',
        'AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX': '10', 'AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT': '30'}
    assert 'AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT' not in worker  # the scheduler's alone


def test_workers_preload_the_engine_and_the_scheduler_looks_again_soon_unless_set_otherwise():
    master, _ = environment.build('master', {**BOUND, **SECRETS, 'AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME': '1'})
    worker, _ = environment.build('worker', {**BOUND, 'DATAFLOW_MASTER_URL': 'http://master.apps.internal:8080'})
    preload = 'dataflow.airflow.celery_config.CELERY_CONFIG'
    assert master['AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS'] == worker['AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS'] == preload
    assert master['AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME'] == '1'
    assert worker['AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL'] == '1'  # the supervisors' wait
    assert environment.build('master', {**BOUND, **SECRETS})[0]['AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME'] == '0.2'


def test_sso_sign_ins_last_sso_session_hours_and_the_oauth_code_is_masked():
    env, _ = environment.build('master', {**BOUND, **SECRETS})
    # Eight hours by default: FAB's idle and absolute session limits, the API tokens' life.
    assert env['AIRFLOW__FAB__SESSION_LIFETIME_MINUTES'] == '480'
    assert env['AIRFLOW__FAB__SESSION_MAX_LIFETIME_MINUTES'] == '480'
    assert env['AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME'] == '28800'
    assert env['AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES'] == 'code'
    env, _ = environment.build('master', {**BOUND, **SECRETS, 'SSO_SESSION_HOURS': '2'})
    assert (env['AIRFLOW__FAB__SESSION_LIFETIME_MINUTES'], env['AIRFLOW__FAB__SESSION_MAX_LIFETIME_MINUTES'],
            env['AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME']) == ('120', '120', '7200')


def test_explicit_airflow_settings_win_and_sensitive_names_are_added_to():
    env, _ = environment.build('master', {**BOUND, **SECRETS, 'SSO_SESSION_HOURS': '2',
                                          'AIRFLOW__FAB__SESSION_LIFETIME_MINUTES': '30',
                                          'AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES': 'hawk_key, webhook'})
    assert env['AIRFLOW__FAB__SESSION_LIFETIME_MINUTES'] == '30'
    assert env['AIRFLOW__FAB__SESSION_MAX_LIFETIME_MINUTES'] == '120'
    assert env['AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES'] == 'hawk_key,webhook,code'
    env, _ = environment.build('master', {**BOUND, **SECRETS, 'AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES': 'code,x'})
    assert env['AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES'] == 'code,x'


@pytest.mark.parametrize('hours, message', [('0', 'SSO_SESSION_HOURS must be at least 1, got 0'),
                                            ('eight', "SSO_SESSION_HOURS must be a whole number, got 'eight'")])
def test_a_bad_sso_session_hours_stops_the_master_naming_it(hours, message):
    with pytest.raises(ConfigurationError, match=message):
        environment.build('master', {**BOUND, **SECRETS, 'SSO_SESSION_HOURS': hours})


def test_local_mode_and_workers_get_no_sso_settings():
    local, _ = environment.build('master', {**BOUND, **SECRETS, 'SSO_PROVIDER': 'local', 'DEBUG': 'true'})
    worker, _ = environment.build('worker', {**BOUND, 'DATAFLOW_MASTER_URL': 'http://data-flow.apps.internal:8080'})
    for env in (local, worker):
        assert not [name for name in env if 'LIFETIME' in name or name in (
            'AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME', 'AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES')]


def test_the_devstack_sso_stack_gets_the_same_settings(tmp_path):
    from devstack.airflow_stack import AirflowStack

    stack = AirflowStack(str(tmp_path), 'postgresql://x/m', 'redis://127.0.0.1:1/0', 8080, auth='sso',
                         env={'SSO_SESSION_HOURS': '3', 'AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES': ''})
    assert (stack.env['AIRFLOW__FAB__SESSION_MAX_LIFETIME_MINUTES'], stack.env['AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME'],
            stack.env['AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES']) == ('180', '10800', 'code')
    local = AirflowStack(str(tmp_path), 'postgresql://x/m', 'redis://127.0.0.1:1/0', 8080,
                         env={'AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES': ''})
    assert 'AIRFLOW__FAB__SESSION_MAX_LIFETIME_MINUTES' not in local.env
