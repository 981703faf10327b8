"""What people look at: the datashader map, the HTML report and its charts, keywords, the web explorer
(``serve``) and its tiles. Reads the store; never takes its lock."""
