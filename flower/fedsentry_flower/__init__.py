"""fedsentry on Flower: a ServerApp whose strategy is any fedsentry rule, and ClientApps that
train a hospital's share of an experiment through the fedsentry package."""
