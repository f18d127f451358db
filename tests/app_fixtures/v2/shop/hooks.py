"""Hooks of the test shop: product codes are stored upper case; installing records who did it."""


def register(hooks):
    def upper_code(context):
        if context.record.get("code"):
            context.record["code"] = context.record["code"].upper()

    hooks.before_save("product", upper_code)


def on_install(context):
    context.records.create(context.actor, "purchase", {"note": f"installed {context.version} from {context.upgrading_from}"})
