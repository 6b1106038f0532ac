# Sphinx configuration of the vmhost.virt reference site. `make docs` generates the
# reStructuredText with antsibull-docs (modules' DOCUMENTATION/EXAMPLES/RETURN, filters,
# roles' meta/argument_specs.yml) into .tmp/docs/rst, adds the pages of this directory and
# builds HTML into .tmp/docs/html with warnings as errors.
project = "vmhost.virt"
copyright = "vmhost.virt contributors"  # noqa: A001  (Sphinx's name)
title = "vmhost.virt documentation"
html_short_title = "vmhost.virt"

extensions = ["sphinx.ext.intersphinx", "sphinx_antsibull_ext"]
pygments_style = "ansible"
highlight_language = "YAML+Jinja"
html_theme = "sphinx_ansible_theme"
html_show_sphinx = False
html_use_modindex = False
html_use_index = False
html_copy_source = False
display_version = False

# The site is built offline: no inventory of docs.ansible.com is fetched. The few
# labels antsibull-docs links to there are defined in ansible_refs.rst.
intersphinx_mapping = {}
