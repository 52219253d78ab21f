"""The four rules every installation starts with (created by a data migration, editable).

Each maps one persona's documented behaviour to the UI that serves it; they are
examples of the mechanism, and operators are expected to edit them.
"""

DEFAULT_RULES = [
    {
        "key": "explorer-discovery",
        "name": "Explorers: surface discovery",
        "description": "Explorers touch many features: show what is new and suggest unused ones.",
        "conditions": {"persona": ["explorer"], "min_confidence": 0.5},
        "action": {
            "home": {"modules": ["whats_new", "feature_suggestions", "recent"]},
            "tips": {"show": True, "style": "discover"},
        },
        "priority": 100,
    },
    {
        "key": "optimizer-compact",
        "name": "Optimizers: compact, keyboard first",
        "description": "Optimizers repeat expert flows fast: dense layout, shortcuts, no tips.",
        "conditions": {"persona": ["optimizer"], "min_confidence": 0.5},
        "action": {
            "layout": {"density": "compact"},
            "shortcuts": {"command_palette": True, "hints": True},
            "tips": {"show": False},
        },
        "priority": 100,
    },
    {
        "key": "achiever-progress",
        "name": "Achievers: goals and streaks up front",
        "description": "Achievers complete goals and keep streaks: show progress and the next goal.",
        "conditions": {"persona": ["achiever"], "min_confidence": 0.5},
        "action": {
            "home": {"modules": ["progress", "next_goal", "streak"]},
            "notifications": {"goal_reminders": True},
        },
        "priority": 100,
    },
    {
        "key": "socializer-community",
        "name": "Socializers: community first",
        "description": "Socializers share, comment and invite: put the feed and invites forward.",
        "conditions": {"persona": ["socializer"], "min_confidence": 0.5},
        "action": {
            "home": {"modules": ["feed", "mentions", "invite_teammates"]},
            "sharing": {"quick_share": True},
        },
        "priority": 100,
    },
]
