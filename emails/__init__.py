"""Email rendering (MJML + Jinja2), locale catalogs and delivery backends."""
