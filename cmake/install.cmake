# Install rules: see the packaging work (issue 2).
