"""Methods beyond the paper, one module each; every module here registers its config with
`replicate.core.methods.register_method` when the registry loads (`load_method_modules`)."""
