<?php
/*
 * Router for PHP's built-in server: serves SimpleSAMLphp's www/ under /simplesaml/.
 *
 * The document root (-t) holds one symlink, simplesaml -> SimpleSAMLphp's www/, so static files
 * (CSS, JS) are served by the built-in server itself. For scripts we set SCRIPT_FILENAME,
 * SCRIPT_NAME and PATH_INFO the way Apache would: SimpleSAMLphp computes its own URLs from the
 * real path of SCRIPT_FILENAME relative to www/ (Utils\HTTP::getSelfURL), and module.php reads
 * the module path from PATH_INFO.
 */

$www = realpath(getenv('SSP_WWW_DIR') ?: '/usr/share/simplesamlphp/www');
$prefix = '/simplesaml';
$path = rawurldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?? '/');

if ($path === $prefix) {
    header('Location: ' . $prefix . '/');
    http_response_code(302);
    return true;
}
if (strpos($path, $prefix . '/') !== 0) {
    http_response_code(404);
    echo "Not found (only {$prefix}/ is served here)\n";
    return true;
}

$relative = substr($path, strlen($prefix));  // "/saml2/idp/SSOService.php", "/module.php/core/..."
if (!preg_match('#^(.*?\.php)(/.*)?$#', $relative, $parts)) {
    if (substr($relative, -1) === '/') {
        $parts = [$relative, $relative . 'index.php', ''];
    } else {
        return false;  // a static file: let the built-in server send it from the symlinked root
    }
}
$script = $parts[1];
$pathInfo = $parts[2] ?? '';

$file = realpath($www . $script);
// Refuse anything outside www/ ("..", symlinks) so the router never runs other PHP files.
if ($file === false || strpos($file, $www . DIRECTORY_SEPARATOR) !== 0 || !is_file($file)) {
    http_response_code(404);
    echo "Not found\n";
    return true;
}

$_SERVER['SCRIPT_FILENAME'] = $file;
$_SERVER['SCRIPT_NAME'] = $prefix . $script;
$_SERVER['PHP_SELF'] = $prefix . $script . $pathInfo;
if ($pathInfo !== '') {
    $_SERVER['PATH_INFO'] = $pathInfo;
} else {
    unset($_SERVER['PATH_INFO']);
}

chdir(dirname($file));
require $file;
return true;
