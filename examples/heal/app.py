"""A report over user profiles with three structural bugs: a missing profile
(None), a missing key and an age that is not a number."""
USERS = {
    "ada": {"bio": "mathematician", "age": "36"},
    "bob": None,                      # no profile yet
    "cyd": {"age": "41"},             # no bio
    "dee": {"bio": "engineer", "age": "n/a"},
}


def get_bio(name):
    profile = USERS.get(name)
    return profile["bio"]


def age(name):
    profile = USERS[name] or {}
    return int(profile.get("age", "0"))


for name in USERS:
    print(f"{name}: {get_bio(name)}, age {age(name)}")
