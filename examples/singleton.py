"""The singleton: every ``DatabaseConnection()`` in a process is one object, from any thread.

Run: ``python examples/singleton.py`` (needs notipipe only). ``ThreadSafeSingletonMeta`` makes
any class of yours a singleton the same way.
"""

from concurrent.futures import ThreadPoolExecutor

from notipipe import DatabaseConnection, ThreadSafeSingletonMeta


class Settings(metaclass=ThreadSafeSingletonMeta):
    def __init__(self) -> None:
        self.region = "eu"


with ThreadPoolExecutor(max_workers=8) as pool:
    made = list(pool.map(lambda _: DatabaseConnection(), range(32)))
print("32 DatabaseConnection() from 8 threads, distinct objects:", len({id(db) for db in made}))
print("Settings() is Settings():", Settings() is Settings())
print("Settings instance exists:", Settings.instance_exists())
Settings.reset_instance()  # forget it (tests do this): the next Settings() is a new object
print("after reset_instance, exists:", Settings.instance_exists())
