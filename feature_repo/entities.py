"""Entities of the example repo."""

from featurestore import Entity

user = Entity("user", join_keys=["user_id"], description="A registered customer", owner="growth@example.com")
