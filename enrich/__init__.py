"""enrich: LLM-written item and user profiles, embedded and stored as features for recommenders.

Example:
    >>> import polars as pl, enrich
    >>> items = pl.DataFrame({"item_id": [1], "title": ["Heat (1995)"], "genres": ["Crime"]})
    >>> out = enrich.profile_items(items, store="features.duckdb")  # doctest: +SKIP
"""

import enrich.cores  # noqa: F401  (first: sets OpenMP's wait policy before native code loads)
from enrich.config import EnrichSettings
from enrich.errors import EnrichError, InputError, StoreError, TransientError
from enrich.history import HistoryOptions
from enrich.junk import JunkRules
from enrich.plan import JobPlan, plan_items, plan_users
from enrich.profiles import profile_items
from enrich.prompts import PromptTemplate
from enrich.reembed import ReembedReport, reembed
from enrich.report import RunReport
from enrich.schemas import ItemProfile, UserProfile
from enrich.store import Store
from enrich.user_profiles import profile_users, render_user_prompts
from enrich.vocab import Vocabulary, controlled, induce_vocabulary

__all__ = [
    "EnrichError",
    "EnrichSettings",
    "HistoryOptions",
    "InputError",
    "ItemProfile",
    "JobPlan",
    "JunkRules",
    "PromptTemplate",
    "ReembedReport",
    "RunReport",
    "Store",
    "StoreError",
    "TransientError",
    "UserProfile",
    "Vocabulary",
    "controlled",
    "induce_vocabulary",
    "plan_items",
    "plan_users",
    "profile_items",
    "profile_users",
    "reembed",
    "render_user_prompts",
]
